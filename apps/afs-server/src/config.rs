//! Server configuration: built-in defaults < `afs-server.toml` < `AFS_SERVER_*` environment <
//! command-line flags. Unknown keys are errors that name their source.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Parser;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Which signals go to an OTLP collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OtlpExport {
    pub traces: bool,
    pub metrics: bool,
}

impl OtlpExport {
    pub fn from_env(env: &[(String, String)]) -> Result<Self> {
        let wanted =
            |signal| aether_telemetry::export_wanted(env, signal).map_err(anyhow::Error::msg);
        Ok(OtlpExport {
            traces: wanted("traces")?,
            metrics: wanted("metrics")?,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// OTLP export of spans and of metrics, from the standard `OTEL_EXPORTER_OTLP_*`
    /// environment (not a configuration key).
    #[serde(skip)]
    pub otlp: OtlpExport,
    /// Directory holding the embedded stores.
    pub data_dir: PathBuf,
    /// `dev` (trust `<tenant-uuid>:<principal>` tokens) or `static` (tokens file).
    pub auth: String,
    pub tokens_file: Option<PathBuf>,
    /// `sqlite://PATH`; defaults to `<data_dir>/metadata.db`.
    pub metadata: Option<String>,
    /// `file://PATH`; defaults to `<data_dir>/blobs`.
    pub blobs: Option<String>,
    pub max_json_bytes: usize,
    pub max_file_bytes: usize,
    /// Largest knowledge-cache value.
    pub max_cache_value_bytes: usize,
    /// Largest bus payload, and how many messages each session's bus retains for replay.
    pub max_bus_payload_bytes: usize,
    pub bus_retention: usize,
    /// fsync blobs before acknowledging writes (power-loss durability).
    pub fsync: bool,
    pub sqlite_readers: usize,
    pub shutdown_grace_secs: u64,
    /// Sustained requests per second per tenant (0 = unlimited) and the burst above it.
    pub tenant_requests_per_sec: u32,
    pub tenant_burst: u32,
    /// Longest time to produce a response's head.
    pub request_timeout_secs: u64,
    /// How often unreferenced blobs are collected (0 = never) and how long a blob must have
    /// been idle first (longer than any write takes between storing a blob and committing).
    pub gc_interval_secs: u64,
    pub gc_grace_secs: u64,
    pub log_level: String,
    /// Directories of this host that sources may import from (paths, git repositories and
    /// bundles below them); none by default.
    pub import_roots: Vec<PathBuf>,
    /// The key that seals secrets at rest (64 hex digits in a file); created with a random
    /// key if missing. Defaults to `<data_dir>/secrets.key`.
    pub secrets_key_file: Option<PathBuf>,
    /// `json` or `text`; `stderr`, `stdout` or `file` (at `log_path`, default
    /// `<data_dir>/logs/afs-server.log`); rotation `none`, `hourly`, `daily` or `size`.
    pub log_format: String,
    pub log_destination: String,
    pub log_path: Option<PathBuf>,
    pub log_rotation: String,
    pub log_rotation_max_bytes: u64,
    pub log_rotation_max_files: usize,
    /// `hash` (sensitive fields as salted SHA-256) or `off`.
    pub log_redaction: String,
    pub log_redact_salt: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            otlp: OtlpExport::default(),
            data_dir: PathBuf::from("./aether-data"),
            auth: "dev".into(),
            tokens_file: None,
            metadata: None,
            blobs: None,
            max_json_bytes: 8 << 20,
            max_file_bytes: 256 << 20,
            max_cache_value_bytes: 1 << 20,
            max_bus_payload_bytes: 256 << 10,
            bus_retention: 1000,
            fsync: false,
            sqlite_readers: 4,
            shutdown_grace_secs: 30,
            tenant_requests_per_sec: 20_000,
            tenant_burst: 40_000,
            request_timeout_secs: 300,
            gc_interval_secs: 3600,
            gc_grace_secs: 3600,
            log_level: "info".into(),
            import_roots: Vec::new(),
            secrets_key_file: None,
            log_format: "json".into(),
            log_destination: "stderr".into(),
            log_path: None,
            log_rotation: "none".into(),
            log_rotation_max_bytes: 50 << 20,
            log_rotation_max_files: 5,
            log_redaction: "hash".into(),
            log_redact_salt: String::new(),
        }
    }
}

/// Command-line flags; each overrides the same key from the file or environment.
#[derive(Debug, Parser, Serialize)]
#[command(
    name = "afs-server",
    version,
    about = "AetherFS server: sessions, filesystem API and event log over HTTP"
)]
pub struct Flags {
    /// Configuration file (default: ./afs-server.toml if present; also AFS_SERVER_CONFIG).
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, value_parser = ["dev", "static"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_file: Option<PathBuf>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blobs: Option<String>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_json_bytes: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_file_bytes: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_cache_value_bytes: Option<usize>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsync: Option<bool>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// A directory sources may import from (repeatable).
    #[arg(long = "import-root")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub import_roots: Vec<PathBuf>,
}

impl ServerConfig {
    /// Resolves every layer; `env` is the process environment (injected for tests).
    pub fn load(flags: &Flags, env: &[(String, String)]) -> Result<ServerConfig> {
        let file = match (
            &flags.config,
            env.iter().find(|(k, _)| k == "AFS_SERVER_CONFIG"),
        ) {
            (Some(p), _) => Some((p.clone(), true)),
            (None, Some((_, p))) => Some((PathBuf::from(p), true)),
            (None, None) => Some((PathBuf::from("afs-server.toml"), false)),
        };
        let mut fig = Figment::from(Serialized::defaults(ServerConfig::default()));
        if let Some((path, explicit)) = file {
            if path.exists() {
                fig = fig.merge(Toml::file_exact(&path));
            } else if explicit {
                bail!(
                    "ConfigFileNotFound: configuration file {} does not exist",
                    path.display()
                );
            }
        }
        let vars: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| k.starts_with("AFS_SERVER_") && k != "AFS_SERVER_CONFIG")
            .cloned()
            .collect();
        fig = fig.merge(EnvSnapshot(vars));
        fig = fig.merge(Serialized::defaults(flags));
        let mut cfg: ServerConfig = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        cfg.validate()?;
        cfg.otlp = OtlpExport::from_env(env)?;
        Ok(cfg)
    }

    pub fn secrets_key_path(&self) -> PathBuf {
        self.secrets_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secrets.key"))
    }

    /// Logging as `aether-telemetry` takes it.
    pub fn log_settings(&self) -> aether_telemetry::LogSettings {
        use aether_telemetry::*;
        let rotation = match self.log_rotation.as_str() {
            "hourly" => Rotation::Hourly,
            "daily" => Rotation::Daily,
            "size" => Rotation::Size {
                max_bytes: self.log_rotation_max_bytes,
            },
            _ => Rotation::None,
        };
        LogSettings {
            level: self.log_level.clone(),
            format: if self.log_format == "text" {
                Format::Text
            } else {
                Format::Json
            },
            destination: match self.log_destination.as_str() {
                "stdout" => Destination::Stdout,
                "file" => Destination::File {
                    path: self
                        .log_path
                        .clone()
                        .unwrap_or_else(|| self.data_dir.join("logs").join("afs-server.log")),
                    rotation,
                    max_files: self.log_rotation_max_files,
                },
                _ => Destination::Stderr,
            },
            redaction: if self.log_redaction == "off" {
                Redaction::Off
            } else {
                Redaction::Hash {
                    salt: self.log_redact_salt.clone(),
                }
            },
            component: "afs-server".into(),
            session_id: None,
            sampling: Vec::new(),
            export_traces: self.otlp.traces,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let one_of = |key: &str, value: &str, allowed: &[&str]| -> Result<()> {
            if allowed.contains(&value) {
                Ok(())
            } else {
                bail!(
                    "{key}: {value:?} is not valid; expected one of {}",
                    allowed.join(", ")
                )
            }
        };
        one_of("log_format", &self.log_format, &["json", "text"])?;
        one_of(
            "log_destination",
            &self.log_destination,
            &["stderr", "stdout", "file"],
        )?;
        one_of(
            "log_rotation",
            &self.log_rotation,
            &["none", "hourly", "daily", "size"],
        )?;
        one_of("log_redaction", &self.log_redaction, &["hash", "off"])?;
        if self.log_rotation_max_bytes == 0 || self.log_rotation_max_files == 0 {
            bail!(
                "log_rotation_max_bytes and log_rotation_max_files: value must be greater than zero"
            );
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            bail!(
                "log_level: {:?} is not a valid level or filter",
                self.log_level
            );
        }
        for root in &self.import_roots {
            if !root.is_dir() {
                bail!(
                    "import_roots: {} is not a directory on this host",
                    root.display()
                );
            }
        }
        for (key, value) in [
            ("max_json_bytes", self.max_json_bytes),
            ("max_file_bytes", self.max_file_bytes),
            ("max_cache_value_bytes", self.max_cache_value_bytes),
            ("max_bus_payload_bytes", self.max_bus_payload_bytes),
            ("bus_retention", self.bus_retention),
        ] {
            if value == 0 {
                bail!("{key}: value must be greater than zero");
            }
        }
        if self.gc_grace_secs < self.request_timeout_secs {
            bail!(
                "gc_grace_secs ({}) must be at least request_timeout_secs ({}): a blob could be collected while a write is still committing it",
                self.gc_grace_secs,
                self.request_timeout_secs
            );
        }
        if self.request_timeout_secs == 0 {
            bail!("request_timeout_secs: value must be greater than zero");
        }
        if self.sqlite_readers == 0 {
            bail!("sqlite_readers: value must be greater than zero");
        }
        if !["dev", "static"].contains(&self.auth.as_str()) {
            bail!(
                "auth: {:?} is not valid; expected one of dev, static",
                self.auth
            );
        }
        self.metadata_path()?;
        self.blobs_path()?;
        Ok(())
    }

    pub fn metadata_path(&self) -> Result<PathBuf> {
        match &self.metadata {
            None => Ok(self.data_dir.join("metadata.db")),
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
                _ if url.starts_with("postgres://") => {
                    bail!("metadata: postgres:// is not available in this build; use sqlite://PATH")
                }
                _ => bail!("metadata: {url:?} is not valid; expected sqlite://PATH"),
            },
        }
    }

    pub fn blobs_path(&self) -> Result<PathBuf> {
        match &self.blobs {
            None => Ok(self.data_dir.join("blobs")),
            Some(url) => match url.strip_prefix("file://") {
                Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
                _ if url.starts_with("s3://") => {
                    bail!("blobs: s3:// is not available in this build; use file://PATH")
                }
                _ => bail!("blobs: {url:?} is not valid; expected file://PATH"),
            },
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// `AFS_SERVER_*` variables from a captured environment, keys lower-cased without the prefix,
/// tagged so errors name the variable.
struct EnvSnapshot(Vec<(String, String)>);

impl figment::Provider for EnvSnapshot {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable(s) AFS_SERVER_*")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        for (k, v) in &self.0 {
            let key = k["AFS_SERVER_".len()..].to_ascii_lowercase();
            let value: figment::value::Value = v
                .parse()
                .unwrap_or_else(|_| figment::value::Value::from(v.clone()));
            dict.insert(key, value);
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}
