//! The command line (SPEC 5): global flags and every subcommand this build offers.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "aether",
    version,
    about = "Mount an AetherFS session as a local directory, and manage sessions"
)]
pub(crate) struct Cli {
    /// Configuration file (default: $AFS_AETHER_CONFIG, else ./aether.toml if present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Read the bearer token from this file (default: $AFS_AUTH_TOKEN).
    #[arg(long, global = true)]
    pub auth_token_file: Option<PathBuf>,
    /// Read the bearer token from standard input.
    #[arg(long, global = true)]
    pub auth_token_stdin: bool,
    /// Print only errors.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// More logging (-v debug, -vv trace).
    #[arg(short, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    pub color: Color,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Mount one session at a directory (in the background unless --foreground).
    Mount(MountArgs),
    /// Flush pending writes, unmount and end the runtime of a mounted session.
    Stop(StopArgs),
    /// Ask a running mount for its state over its control socket.
    Status(StatusArgs),
    /// Session routes over HTTP.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Source routes over HTTP: baselines, imports and promotion.
    #[command(subcommand)]
    Source(SourceCmd),
    /// Version, commit and build target.
    Version(JsonFlag),
    /// Print the resolved configuration and the layer that set each value.
    Config(JsonFlag),
    /// Start an embedded server, create a session and mount it; Ctrl-C cleans up.
    Dev(DevArgs),
    /// The local cache of a running mount.
    #[command(subcommand)]
    Cache(CacheCmd),
    /// Open file handles and session state of a running mount.
    #[command(subcommand)]
    Debug(DebugCmd),
    /// Journal backlog and backpressure of a running mount.
    #[command(subcommand)]
    Journal(JournalCmd),
    /// Spans of a running mount.
    #[command(subcommand)]
    Trace(TraceCmd),
    /// Where the logs of this configuration go.
    #[command(subcommand)]
    Logs(LogsCmd),
    /// Where the metrics of this configuration are served.
    #[command(subcommand)]
    Metrics(MetricsCmd),
    /// Turn aether off (or on again) in the resolved aether.toml.
    #[command(subcommand)]
    Fallback(FallbackCmd),
    /// Local preflight: FUSE, privilege, kernel, mount dir, cache dir, configuration.
    Doctor {
        #[arg(long)]
        mount_dir: Option<PathBuf>,
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Dead aetherfs mounts and stale control sockets.
    #[command(subcommand)]
    Fuse(FuseCmd),
}

#[derive(Debug, Subcommand)]
pub(crate) enum FuseCmd {
    /// List aetherfs mounts, dead ones ("transport endpoint is not connected") marked.
    Check {
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Lazily unmount dead aetherfs mounts and remove stale control sockets.
    Cleanup {
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CacheCmd {
    /// Cache size, entries, dirty bytes, shared-store links.
    Inspect(StatusArgs),
    /// Drop clean cached content (never anything not yet on the server).
    Clear(StatusArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum DebugCmd {
    Handles(StatusArgs),
    Sessions(StatusArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum JournalCmd {
    /// Backpressure state and the thresholds it is judged by.
    Throttle(StatusArgs),
}

#[derive(Debug, Subcommand)]
pub(crate) enum TraceCmd {
    /// Record the spans of a short window of the runtime's work into a JSON-lines file.
    Capture {
        #[command(flatten)]
        target: StatusArgs,
        /// How long to record, 1 to 300 seconds.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Where to write; defaults to `<cache_dir>/traces/<session>-<unix time>.jsonl`.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum LogsCmd {
    /// Print the last lines of the log file (and follow it).
    Tail {
        #[arg(short = 'n', default_value_t = 50)]
        lines: usize,
        #[arg(long, short = 'f')]
        follow: bool,
        /// The cache dir whose runtime logs to read (background mounts log there).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MetricsCmd {
    /// The metrics bind address and scrape URL.
    Show(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub(crate) enum FallbackCmd {
    /// Set `disable = true`: `aether mount` then explains and exits 0 without mounting.
    Enable,
    /// Set `disable = false`.
    Disable,
}

#[derive(Debug, Args, Clone, Default)]
pub(crate) struct MountArgs {
    #[arg(long)]
    pub session_id: String,
    #[arg(long)]
    pub mount_dir: PathBuf,
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Host-wide shared blob store root (`off` disables it).
    #[arg(long)]
    pub cache_shared_root: Option<String>,
    #[arg(long, conflicts_with = "cache_shared_root")]
    pub no_cache_shared_root: bool,
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Mount option tokens (repeatable, comma lists allowed).
    #[arg(long = "mount-option")]
    pub mount_option: Vec<String>,
    #[arg(long)]
    pub allow_other: bool,
    #[arg(long)]
    pub writeback_cache: bool,
    #[arg(long)]
    pub metrics_addr: Option<String>,
    #[arg(long)]
    pub log_level: Option<String>,
    /// Seconds the kernel and the mount trust names and attributes.
    #[arg(long)]
    pub metadata_ttl: Option<u64>,
    #[arg(long)]
    pub negative_lookup_ttl: Option<u64>,
    #[arg(long)]
    pub dir_cache_ttl: Option<u64>,
    #[arg(long)]
    pub read_only: bool,
    /// Stay attached to the terminal instead of returning once mounted.
    #[arg(long)]
    pub foreground: bool,
    /// Server endpoint (overrides [bridge].server_endpoint).
    #[arg(long, hide = true)]
    pub endpoint: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    #[arg(long)]
    pub session_id: String,
    #[arg(long, alias = "control-socket")]
    pub socket: Option<PathBuf>,
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[arg(long)]
    pub session_id: String,
    #[arg(long, alias = "control-socket")]
    pub socket: Option<PathBuf>,
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct JsonFlag {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Where the embedded server keeps its data.
    #[arg(long, default_value = "./aether-data")]
    pub data_dir: PathBuf,
    #[arg(long, default_value = "./aether-workspace")]
    pub mount_dir: PathBuf,
    /// Copy this directory into the new session first.
    #[arg(long)]
    pub source_dir: Option<PathBuf>,
    /// Address for the embedded server (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Cache directory for the mount (default: under the data dir).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SessionCmd {
    /// Create a session: empty, or over a source's revision (the latest unless named).
    Create {
        /// Tags as KEY=VALUE (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[arg(long)]
        source_id: Option<String>,
        #[arg(long, requires = "source_id")]
        revision_id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        json: bool,
    },
    Show {
        #[arg(long)]
        session_id: String,
        #[arg(long)]
        json: bool,
    },
    Fork {
        #[arg(long)]
        session_id: String,
        #[arg(long)]
        json: bool,
    },
    Checkpoint {
        #[arg(long)]
        session_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    Restore {
        #[arg(long)]
        session_id: String,
        #[arg(long)]
        checkpoint_id: String,
        #[arg(long)]
        json: bool,
    },
    Archive {
        #[arg(long)]
        session_id: String,
        #[arg(long)]
        json: bool,
    },
    Delete {
        #[arg(long)]
        session_id: String,
    },
    /// Ask for an approval of the session as it is now (bound to its generation).
    RequestApproval {
        #[arg(long)]
        session_id: String,
        /// Such as COMMIT_TO_MAIN (A-Z, 0-9, _ . -).
        #[arg(long)]
        reason: String,
        /// A JSON object for the reviewer.
        #[arg(long)]
        details: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Grant a pending approval (as a principal other than its requester).
    Approve {
        #[arg(long)]
        session_id: String,
        #[arg(long)]
        approval_id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Deny a pending approval.
    Deny {
        #[arg(long)]
        session_id: String,
        #[arg(long)]
        approval_id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the session's approvals (stale ones read STALE).
    Approvals {
        #[arg(long)]
        session_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Record the session's tree as a commit (approval-gated by the session's policy).
    Commit {
        #[arg(long)]
        session_id: String,
        #[arg(long, short = 'm')]
        message: String,
        #[arg(long)]
        author: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SourceCmd {
    /// Create a source; with --path, --git-url or --bundle-path it imports at once.
    Create {
        #[arg(long)]
        name: String,
        /// A directory on the server's host (SOURCE_KIND_LOCAL_PATH).
        #[arg(long, conflicts_with_all = ["git_url", "bundle_path", "archive"])]
        path: Option<String>,
        /// A git repository (SOURCE_KIND_GIT), with --git-ref for a branch or tag.
        #[arg(long, conflicts_with_all = ["bundle_path", "archive"])]
        git_url: Option<String>,
        #[arg(long, requires = "git_url")]
        git_ref: Option<String>,
        /// A git bundle on the server's host (SOURCE_KIND_GIT_BUNDLE).
        #[arg(long, conflicts_with = "archive")]
        bundle_path: Option<String>,
        /// A local tar file to upload (SOURCE_KIND_ARCHIVE).
        #[arg(long)]
        archive: Option<std::path::PathBuf>,
        /// Create only; import later with `aether source import`.
        #[arg(long)]
        no_import: bool,
        #[arg(long)]
        json: bool,
    },
    /// Import (or with --archive upload) and follow the job to its end.
    Import {
        #[arg(long)]
        source_id: String,
        #[arg(long)]
        archive: Option<std::path::PathBuf>,
        /// Import again as a new revision.
        #[arg(long)]
        refresh: bool,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Show {
        #[arg(long)]
        source_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Make a session's tree the source's next revision (needs an approval by default).
    Promote {
        #[arg(long)]
        source_id: String,
        #[arg(long)]
        session_id: String,
        #[arg(long)]
        json: bool,
    },
}
