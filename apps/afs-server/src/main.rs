//! afs-server: the AetherFS HTTP server (composition root only).

use std::time::Duration;

use anyhow::Result;
use clap::Parser;

use afs_server::config::{Flags, ServerConfig};

/// A faster allocator for a server that allocates per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<()> {
    let flags = Flags::parse();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let cfg = ServerConfig::load(&flags, &env)?;
    let (log, fallback) =
        aether_telemetry::init(&cfg.log_settings()).map_err(anyhow::Error::msg)?;
    if let Some(f) = fallback {
        eprintln!("warning: {}", f.0);
    }
    // Before the server is announced: SIGHUP's default action would end the process.
    let mut signals = Signals::install()?;
    let server = afs_server::start(&cfg).await?;
    tracing::info!(addr = %server.addr, data_dir = %cfg.data_dir.display(), auth = %cfg.auth, "afs-server listening");
    println!("{}", afs_server::listening_line(server.addr));
    while signals.next().await == Signal::Reload {
        // SIGHUP: the log level applies live; anything else needs a restart.
        let env: Vec<(String, String)> = std::env::vars().collect();
        match ServerConfig::load(&flags, &env) {
            Ok(new) => match log.set_level(&new.log_level) {
                Ok(true) => {
                    tracing::info!(level = %new.log_level, "SIGHUP: log level changed; other settings need a restart")
                }
                Ok(false) => tracing::info!(
                    "SIGHUP: RUST_LOG decides the log level; other settings need a restart"
                ),
                Err(e) => tracing::warn!(error = %e, "SIGHUP: keeping the current log level"),
            },
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "SIGHUP: the configuration is invalid; keeping the current one")
            }
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    server
        .stop(Duration::from_secs(cfg.shutdown_grace_secs))
        .await;
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    Stop,
    Reload,
}

/// SIGTERM and SIGINT stop the server; SIGHUP reloads the log level.
struct Signals {
    term: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => Signal::Stop,
            _ = tokio::signal::ctrl_c() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
        }
    }
}
