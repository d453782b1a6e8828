//! aether: the AetherFS CLI (composition root): mounts a session through FUSE, talks to a
//! running mount over its control socket, and drives the session routes over HTTP.

mod background;
mod cli;
mod config;
mod control;
mod dev;
mod doctor;
mod logging;
mod metrics;
mod ops;
mod progress;
mod runtime;
mod session_cmd;
mod source_cmd;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use figment::value::Value;

use cli::{Cli, Command, MountArgs};
use config::AetherConfig;

// No `#[global_allocator]`: the mount runtime holds one node per path it has seen, and glibc's
// allocator keeps that table in about half the memory mimalloc did (ARCHITECTURE.md, Decisions).

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("aether: {e:#}");
        std::process::exit(1);
    }
}

/// The environment, captured once so every layer sees the same values.
fn environment() -> Vec<(String, String)> {
    std::env::vars().collect()
}

/// Flag values as configuration layers (flag name, key, value).
fn mount_flag_layers(a: &MountArgs) -> Vec<(&'static str, &'static str, Value)> {
    let mut out: Vec<(&'static str, &'static str, Value)> = Vec::new();
    if let Some(d) = &a.cache_dir {
        out.push((
            "--cache-dir",
            "cache_dir",
            Value::from(d.display().to_string()),
        ));
    }
    if let Some(r) = &a.cache_shared_root {
        out.push((
            "--cache-shared-root",
            "shared_cache_root",
            Value::from(r.clone()),
        ));
    }
    if a.no_cache_shared_root {
        out.push((
            "--no-cache-shared-root",
            "shared_cache_root",
            Value::from("off"),
        ));
    }
    if let Some(s) = &a.control_socket {
        out.push((
            "--control-socket",
            "control_socket",
            Value::from(s.display().to_string()),
        ));
    }
    if !a.mount_option.is_empty() {
        out.push((
            "--mount-option",
            "mount_options",
            Value::from(a.mount_option.clone()),
        ));
    }
    if let Some(m) = &a.metrics_addr {
        out.push(("--metrics-addr", "metrics_addr", Value::from(m.clone())));
    }
    if let Some(l) = &a.log_level {
        out.push(("--log-level", "log_level", Value::from(l.clone())));
    }
    if let Some(t) = a.metadata_ttl {
        out.push(("--metadata-ttl", "lookup_ttl_secs", Value::from(t)));
    }
    if let Some(t) = a.negative_lookup_ttl {
        out.push((
            "--negative-lookup-ttl",
            "negative_lookup_ttl_secs",
            Value::from(t),
        ));
    }
    if let Some(t) = a.dir_cache_ttl {
        out.push(("--dir-cache-ttl", "dir_cache_ttl_secs", Value::from(t)));
    }
    if let Some(e) = &a.endpoint {
        out.push((
            "--endpoint",
            "bridge.server_endpoint",
            Value::from(e.clone()),
        ));
    }
    out
}

fn load_config(
    cli: &Cli,
    env: &[(String, String)],
    flags: Vec<(&'static str, &'static str, Value)>,
) -> Result<config::Loaded> {
    let file = config::config_file(cli.config.as_deref(), env)?;
    AetherConfig::load(file.as_deref(), env, flags)
}

/// The bearer token: `--auth-token-stdin`, `--auth-token-file`, else `AFS_AUTH_TOKEN`.
fn token(cli: &Cli, env: &[(String, String)]) -> Result<String> {
    let raw = if cli.auth_token_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_line(&mut s)
            .context("read the token from standard input")?;
        s
    } else if let Some(f) = &cli.auth_token_file {
        std::fs::read_to_string(f)
            .with_context(|| format!("read the token file {}", f.display()))?
    } else if let Some((_, v)) = env.iter().find(|(k, _)| k == "AFS_AUTH_TOKEN") {
        v.clone()
    } else {
        bail!("no auth token: set AFS_AUTH_TOKEN, or pass --auth-token-file or --auth-token-stdin")
    };
    let t = raw.trim().to_owned();
    if t.is_empty() || t.contains(char::is_whitespace) {
        bail!("the auth token is empty or contains whitespace");
    }
    Ok(t)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aether")
        .build()
        .context("start the async runtime")
}

fn run(cli: Cli) -> Result<()> {
    let env = environment();
    match &cli.command {
        Command::Version(j) => {
            let (version, commit, target) = (
                env!("CARGO_PKG_VERSION"),
                option_env!("AETHER_COMMIT").unwrap_or("unknown"),
                format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            );
            if j.json {
                println!(
                    "{}",
                    serde_json::json!({"version": version, "commit": commit, "target": target})
                );
            } else {
                println!("aether {version} (commit {commit}, target {target})");
            }
            Ok(())
        }
        Command::Config(j) => {
            let loaded = load_config(&cli, &env, vec![])?;
            print_config(&loaded, j.json)
        }
        Command::Mount(args) => {
            let loaded = load_config(&cli, &env, mount_flag_layers(args))?;
            let cache = args
                .cache_dir
                .clone()
                .unwrap_or_else(|| loaded.config.cache_dir(&env));
            logging::init(&logging::settings(
                &cli,
                &loaded.config,
                &env,
                &cache,
                Some(&args.session_id),
            )?)?;
            if loaded.config.disable {
                println!(
                    "aether is disabled by configuration (disable = true, from {}); not mounting",
                    config::source_of(&loaded.figment, "disable")
                );
                return Ok(());
            }
            let plan = mount_plan(&cli, &env, &loaded.config, args)?;
            if args.foreground {
                let reload = || -> Result<AetherConfig> {
                    Ok(load_config(&cli, &environment(), mount_flag_layers(args))?.config)
                };
                foreground(plan, &reload)
            } else {
                background::spawn_and_wait(&plan)
            }
        }
        Command::Stop(a) => {
            let socket = control_socket(&cli, &env, &a.session_id, &a.socket, &a.cache_dir)?;
            control::request(&socket, "STOP", &a.session_id)?;
            // The runtime removes its socket once it has flushed and unmounted; until then it
            // still answers STATUS, which tells how much is left to write back.
            let mut progress = progress::Progress::new(cli.quiet);
            for _ in 0..1200 {
                if std::os::unix::net::UnixStream::connect(&socket).is_err() {
                    progress.finish("flushed and unmounted".to_owned());
                    if !cli.quiet {
                        println!("stopped session {}", a.session_id);
                    }
                    return Ok(());
                }
                if let Ok(st) = control::request(&socket, "STATUS", &a.session_id) {
                    let j = &st["journal"];
                    progress.update(format!(
                        "stopping: {} changes ({} bytes) left to write back",
                        j["pending_entries"], j["pending_bytes"]
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            bail!("the runtime of {} did not stop within 120 s", a.session_id)
        }
        Command::Status(a) => {
            let socket = control_socket(&cli, &env, &a.session_id, &a.socket, &a.cache_dir)?;
            let reply = control::request(&socket, "STATUS", &a.session_id)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print_status(&reply);
            }
            Ok(())
        }
        Command::Session(cmd) => {
            let loaded = load_config(&cli, &env, vec![])?;
            let endpoint = endpoint(&loaded.config)?;
            let token = token(&cli, &env)?;
            runtime()?.block_on(session_cmd::run(cmd, &endpoint, &token))
        }
        Command::Source(cmd) => {
            let loaded = load_config(&cli, &env, vec![])?;
            let endpoint = endpoint(&loaded.config)?;
            let token = token(&cli, &env)?;
            runtime()?.block_on(source_cmd::run(cmd, &endpoint, &token))
        }
        Command::Cache(c) => {
            let (a, verb) = match c {
                cli::CacheCmd::Inspect(a) => (a, "CACHE INSPECT"),
                cli::CacheCmd::Clear(a) => (a, "CACHE CLEAR"),
            };
            runtime_query(&cli, &env, a, verb)
        }
        Command::Debug(c) => {
            let (a, verb) = match c {
                cli::DebugCmd::Handles(a) => (a, "DEBUG HANDLES"),
                cli::DebugCmd::Sessions(a) => (a, "DEBUG SESSIONS"),
            };
            runtime_query(&cli, &env, a, verb)
        }
        Command::Journal(cli::JournalCmd::Throttle(a)) => {
            runtime_query(&cli, &env, a, "JOURNAL THROTTLE")
        }
        Command::Trace(cli::TraceCmd::Capture {
            target,
            seconds,
            output,
        }) => trace_capture(&cli, &env, target, *seconds, output.as_deref()),
        Command::Logs(cli::LogsCmd::Tail {
            lines,
            follow,
            cache_dir,
        }) => {
            let loaded = load_config(&cli, &env, vec![])?;
            let cache = cache_dir
                .clone()
                .unwrap_or_else(|| loaded.config.cache_dir(&env));
            match ops::log_place(&loaded.config, &cache) {
                ops::LogPlace::File(p) => ops::tail(&p, *lines, *follow),
                ops::LogPlace::Captured(p) => {
                    eprintln!(
                        "logs go to {}; showing {} (what background mounts write there)",
                        loaded.config.logging.destination,
                        p.display()
                    );
                    ops::tail(&p, *lines, *follow)
                }
                ops::LogPlace::Stream(s) => {
                    println!(
                        "logs go to {s} (logging.destination = {}, from {}); there is no file to tail",
                        loaded.config.logging.destination,
                        config::source_of(&loaded.figment, "logging.destination")
                    );
                    Ok(())
                }
            }
        }
        Command::Metrics(cli::MetricsCmd::Show(j)) => {
            let loaded = load_config(&cli, &env, vec![])?;
            let addr = &loaded.config.metrics_addr;
            let url = ops::scrape_url(addr)?;
            if j.json {
                println!(
                    "{}",
                    serde_json::json!({"metrics_addr": addr, "scrape_url": url, "source": config::source_of(&loaded.figment, "metrics_addr")})
                );
            } else {
                println!(
                    "metrics address: {addr} (from {})",
                    config::source_of(&loaded.figment, "metrics_addr")
                );
                println!("scrape URL:      {url}");
            }
            Ok(())
        }
        Command::Fallback(c) => {
            let disable = matches!(c, cli::FallbackCmd::Enable);
            let file = config::config_file(cli.config.as_deref(), &env)?
                .unwrap_or_else(|| PathBuf::from("aether.toml"));
            ops::set_disable(&file, disable)?;
            if !cli.quiet {
                println!(
                    "disable = {disable} written to {}{}",
                    file.display(),
                    if disable {
                        " (aether mount will now decline to mount)"
                    } else {
                        ""
                    }
                );
            }
            Ok(())
        }
        Command::Doctor {
            mount_dir,
            cache_dir,
            json,
        } => {
            let loaded = load_config(&cli, &env, vec![]);
            let cache = cache_dir.clone().unwrap_or_else(|| match &loaded {
                Ok(l) => l.config.cache_dir(&env),
                Err(_) => AetherConfig::default().cache_dir(&env),
            });
            let config = loaded
                .as_ref()
                .map(|l| &l.config)
                .map_err(|e| format!("{e:#}"));
            let checks = doctor::checks(config, &cache, mount_dir.as_deref());
            doctor::report(&checks, *json);
            if checks.iter().any(|c| c.verdict == "FAIL") {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Fuse(cli::FuseCmd::Check { cache_dir, json }) => {
            let cache = cache_dir
                .clone()
                .unwrap_or_else(|| AetherConfig::default().cache_dir(&env));
            let mounts = doctor::aether_mounts();
            let sockets = doctor::stale_sockets(&cache);
            if *json {
                let m: Vec<serde_json::Value> = mounts
                    .iter()
                    .map(|m| serde_json::json!({"mount_dir": m.dir, "dead": m.dead}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"mounts": m, "stale_sockets": sockets})
                );
            } else {
                if mounts.is_empty() {
                    println!("no aetherfs mounts");
                }
                for m in &mounts {
                    let state = if m.dead {
                        "DEAD (transport endpoint is not connected; run aether fuse cleanup)"
                    } else {
                        "alive"
                    };
                    println!("{}  {state}", m.dir.display());
                }
                for s in &sockets {
                    println!("stale control socket {}", s.display());
                }
            }
            Ok(())
        }
        Command::Fuse(cli::FuseCmd::Cleanup { cache_dir }) => {
            let cache = cache_dir
                .clone()
                .unwrap_or_else(|| AetherConfig::default().cache_dir(&env));
            let mut failed = false;
            for m in doctor::aether_mounts().into_iter().filter(|m| m.dead) {
                match doctor::detach(&m.dir) {
                    Ok(doctor::Detached::ByUs) => {
                        println!("detached dead mount {}", m.dir.display())
                    }
                    Ok(doctor::Detached::AlreadyGone) => {
                        println!("dead mount {} was already detached", m.dir.display())
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("cannot detach {}: {e}", m.dir.display());
                    }
                }
            }
            for s in doctor::stale_sockets(&cache) {
                match std::fs::remove_file(&s) {
                    Ok(()) => println!("removed stale control socket {}", s.display()),
                    Err(e) => {
                        failed = true;
                        eprintln!("cannot remove {}: {e}", s.display());
                    }
                }
            }
            if failed {
                bail!("some dead mounts or sockets could not be cleaned up");
            }
            Ok(())
        }
        Command::Dev(args) => {
            let loaded = load_config(&cli, &env, vec![])?;
            let cache = loaded.config.cache_dir(&env);
            logging::init(&logging::settings(
                &cli,
                &loaded.config,
                &env,
                &cache,
                None,
            )?)?;
            runtime()?.block_on(dev::run(args, loaded.config, &env))
        }
    }
}

/// The control socket of `session`'s runtime: `--socket`, else the configured location.
fn control_socket(
    cli: &Cli,
    env: &[(String, String)],
    session: &str,
    socket: &Option<PathBuf>,
    cache_dir: &Option<PathBuf>,
) -> Result<PathBuf> {
    if let Some(s) = socket {
        return Ok(s.clone());
    }
    let config = load_config(cli, env, vec![])?.config;
    let cache = cache_dir.clone().unwrap_or_else(|| config.cache_dir(env));
    Ok(config.control_socket(&cache, session))
}

fn endpoint(cfg: &AetherConfig) -> Result<String> {
    cfg.bridge.server_endpoint.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "no server endpoint: set [bridge].server_endpoint in aether.toml or AFS_AETHER_SERVER_ENDPOINT"
        )
    })
}

fn mount_plan(
    cli: &Cli,
    env: &[(String, String)],
    cfg: &AetherConfig,
    a: &MountArgs,
) -> Result<runtime::MountPlan> {
    let endpoint = endpoint(cfg)?;
    let token = token(cli, env)?;
    let cache_dir = absolute(&cfg.cache_dir(env))?;
    Ok(runtime::MountPlan {
        session_id: a.session_id.clone(),
        mount_dir: absolute(&a.mount_dir)?,
        endpoint,
        token,
        shared_root: cfg.shared_root(&cache_dir),
        control_socket: cfg.control_socket(&cache_dir, &a.session_id),
        worker_id: runtime::worker_id(cfg, &cache_dir)?,
        cache_dir,
        config: cfg.clone(),
        read_only: a.read_only,
        allow_other: a.allow_other,
        writeback_cache: a.writeback_cache,
    })
}

/// `p` made absolute against the current directory, without `.` components.
pub(crate) fn absolute(p: &Path) -> Result<PathBuf> {
    let base = if p.is_absolute() {
        PathBuf::new()
    } else {
        std::env::current_dir().context("read the current directory")?
    };
    Ok(base
        .join(p)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect())
}

/// Runs a mount attached to this process until a signal or `aether stop`; SIGHUP reloads the
/// configuration through `reload`.
fn foreground(plan: runtime::MountPlan, reload: &dyn Fn() -> Result<AetherConfig>) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = runtime()?;
    rt.block_on(async move {
        let session = plan.session_id.clone();
        let dir = plan.mount_dir.clone();
        // Before the mount is announced: SIGHUP's default action would end the runtime.
        let mut hangup = signal(SignalKind::hangup()).context("listen for SIGHUP")?;
        let mut signals = runtime::StopSignals::install();
        let mut running = runtime::start(plan).await?;
        background::announce_ready(&session, &dir);
        let stop = running.stop_requested.clone();
        loop {
            tokio::select! {
                _ = signals.wait(&stop) => break,
                _ = hangup.recv() => match reload() {
                    Ok(cfg) => running.reload(cfg, &logging::set_level),
                    // A bad edit must not take the mount down: keep the old settings.
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "SIGHUP: the configuration is invalid; keeping the current one"),
                },
            }
        }
        tracing::info!("stopping: flushing pending writes and unmounting");
        running.shutdown(Duration::from_secs(60)).await;
        Ok(())
    })
}

fn print_config(loaded: &config::Loaded, json: bool) -> Result<()> {
    let value = serde_json::to_value(&loaded.config)?;
    let mut rows = Vec::new();
    flatten("", &value, &mut rows);
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": v, "source": config::source_of(&loaded.figment, k)}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"file": loaded.file, "values": out}))?
        );
        return Ok(());
    }
    match &loaded.file {
        Some(f) => println!("# configuration file: {}", f.display()),
        None => println!("# no configuration file (defaults, environment and flags only)"),
    }
    for (k, v) in rows {
        println!("{k} = {v}    # {}", config::source_of(&loaded.figment, &k));
    }
    Ok(())
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

/// Sends `verb` to a running mount's control socket and prints the answer (JSON either way:
/// these are structured dumps).
fn runtime_query(
    cli: &Cli,
    env: &[(String, String)],
    a: &cli::StatusArgs,
    verb: &str,
) -> Result<()> {
    let socket = control_socket(cli, env, &a.session_id, &a.socket, &a.cache_dir)?;
    let reply = control::request(&socket, verb, &a.session_id)?;
    if a.json {
        println!("{}", serde_json::to_string(&reply)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    }
    Ok(())
}

/// `aether trace capture`: the runtime records its spans for `seconds` and writes them.
fn trace_capture(
    cli: &Cli,
    env: &[(String, String)],
    a: &cli::StatusArgs,
    seconds: u64,
    output: Option<&Path>,
) -> Result<()> {
    if !(1..=300).contains(&seconds) {
        bail!("--seconds {seconds}: expected a whole number from 1 to 300");
    }
    let socket = control_socket(cli, env, &a.session_id, &a.socket, &a.cache_dir)?;
    let output = match output {
        Some(p) => absolute(p)?,
        None => {
            let config = load_config(cli, env, vec![])?.config;
            let cache = a.cache_dir.clone().unwrap_or_else(|| config.cache_dir(env));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            absolute(
                &cache
                    .join("traces")
                    .join(format!("{}-{now}.jsonl", a.session_id)),
            )?
        }
    };
    let request =
        serde_json::json!({"verb": "TRACE CAPTURE", "seconds": seconds, "output": output});
    let session = a.session_id.clone();
    let wait = Duration::from_secs(seconds + 60);
    let asking =
        std::thread::spawn(move || control::request_with(&socket, request, &session, wait));
    let mut progress = progress::Progress::new(a.json || cli.quiet);
    let started = std::time::Instant::now();
    while !asking.is_finished() {
        let left = seconds.saturating_sub(started.elapsed().as_secs());
        progress.update(format!("recording spans: {left} s left"));
        std::thread::sleep(Duration::from_millis(200));
    }
    progress.finish(format!("recorded {seconds} s of spans"));
    let reply = asking
        .join()
        .map_err(|_| anyhow::anyhow!("the trace capture request panicked"))??;
    if a.json {
        println!("{}", serde_json::to_string(&reply)?);
    } else if reply["ok"] == true {
        println!(
            "{} spans written to {}",
            reply["spans"],
            reply["output"].as_str().unwrap_or("?")
        );
    }
    if reply["ok"] != true {
        bail!(
            "trace capture failed: {}",
            reply["error"].as_str().unwrap_or("no reason given")
        );
    }
    Ok(())
}

fn print_status(r: &serde_json::Value) {
    let j = &r["journal"];
    println!(
        "session:        {}",
        r["session_id"].as_str().unwrap_or("?")
    );
    println!("mount dir:      {}", r["mount_dir"].as_str().unwrap_or("?"));
    println!("endpoint:       {}", r["endpoint"].as_str().unwrap_or("?"));
    println!("uptime:         {} s", r["uptime_seconds"]);
    println!("operations:     {}", r["ops"]);
    println!(
        "cache hits:     {:.1} %",
        r["cache_hit_ratio"].as_f64().unwrap_or(0.0) * 100.0
    );
    println!(
        "journal:        {} entries, {} bytes pending, oldest {} s; {} written back, {} refused",
        j["pending_entries"],
        j["pending_bytes"],
        j["oldest_age_seconds"],
        j["written_back"],
        j["rejected"]
    );
    println!(
        "backpressure:   {}",
        r["backpressure"].as_str().unwrap_or("?")
    );
    match r["last_server_contact_seconds_ago"].as_u64() {
        Some(s) => println!("server contact: {s} s ago"),
        None => println!("server contact: never"),
    }
    let t = &r["ttls"];
    println!(
        "TTLs:           lookup {} s, negative {} s, directory {} s",
        t["lookup_ttl_secs"], t["negative_lookup_ttl_secs"], t["dir_cache_ttl_secs"]
    );
}
