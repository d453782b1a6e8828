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
    let (_log, fallback) =
        aether_telemetry::init(&cfg.log_settings()).map_err(anyhow::Error::msg)?;
    if let Some(f) = fallback {
        eprintln!("warning: {}", f.0);
    }
    let server = afs_server::start(&cfg).await?;
    tracing::info!(addr = %server.addr, data_dir = %cfg.data_dir.display(), auth = %cfg.auth, "afs-server listening");
    println!("{}", afs_server::listening_line(server.addr));
    shutdown_signal().await;
    tracing::info!("shutting down: draining in-flight requests");
    server
        .stop(Duration::from_secs(cfg.shutdown_grace_secs))
        .await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
