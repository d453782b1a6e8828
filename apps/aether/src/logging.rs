//! Logging for the CLI and the mount runtime: turns the `[logging]` settings (and the
//! environment-only rotation and salt variables) into `aether-telemetry` settings.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Result, anyhow};

use aether_telemetry::{Destination, Format, LogHandle, LogSettings, Redaction, Rotation, Sample};

use crate::cli::Cli;
use crate::config::AetherConfig;

/// Changes the log level of the running process (SIGHUP); set once logging starts.
static HANDLE: OnceLock<LogHandle> = OnceLock::new();

fn env_u64(env: &[(String, String)], name: &str, default: u64) -> Result<u64> {
    match env.iter().find(|(k, _)| k == name) {
        None => Ok(default),
        Some((_, v)) => match v.trim().parse::<u64>() {
            Ok(0) => Err(anyhow!("{name}: value must be greater than zero")),
            Ok(n) => Ok(n),
            Err(_) => Err(anyhow!("{name}: {v:?} is not a whole number")),
        },
    }
}

/// The settings for this process; `session` tags every line of a mount runtime.
pub(crate) fn settings(
    cli: &Cli,
    config: &AetherConfig,
    env: &[(String, String)],
    cache_dir: &Path,
    session: Option<&str>,
) -> Result<LogSettings> {
    let l = &config.logging;
    let level = match cli.verbose {
        0 if cli.quiet => "error".to_owned(),
        0 => config.log_level.clone(),
        1 => "debug".to_owned(),
        _ => "trace".to_owned(),
    };
    // Checked whatever the rotation, so a bad value is found before it matters.
    let max_bytes = env_u64(env, "AFS_AETHER_LOG_ROTATION_MAX_BYTES", 50 << 20)?;
    let rotation = match l.rotation.as_str() {
        "hourly" => Rotation::Hourly,
        "daily" => Rotation::Daily,
        "size" => Rotation::Size { max_bytes },
        _ => Rotation::None,
    };
    let max_files = env_u64(env, "AFS_AETHER_LOG_ROTATION_MAX_FILES", 5)? as usize;
    let destination = match l.destination.as_str() {
        "stdout" => Destination::Stdout,
        "file" => Destination::File {
            path: l
                .path
                .clone()
                .unwrap_or_else(|| cache_dir.join("logs").join("aether.log")),
            rotation,
            max_files,
        },
        _ => Destination::Stderr,
    };
    let salt = env
        .iter()
        .find(|(k, _)| k == "AFS_AETHER_LOG_REDACT_SALT")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Ok(LogSettings {
        level,
        format: if l.format == "text" {
            Format::Text
        } else {
            Format::Json
        },
        destination,
        redaction: if l.redaction == "off" {
            Redaction::Off
        } else {
            Redaction::Hash { salt }
        },
        component: "aether".to_owned(),
        session_id: session.map(str::to_owned),
        sampling: vec![
            Sample {
                needle: "prefetch".to_owned(),
                every: l.sampling.prefetch_debug_every,
            },
            Sample {
                needle: "changefeed".to_owned(),
                every: l.sampling.invalidation_debug_every,
            },
        ],
        export_traces: aether_telemetry::export_wanted(env, "traces")
            .map_err(anyhow::Error::msg)?,
    })
}

/// Starts logging; a log file that cannot be used falls back to stderr with a warning.
pub(crate) fn init(settings: &LogSettings) -> Result<()> {
    let (handle, fallback) = aether_telemetry::init(settings).map_err(|e| anyhow!(e))?;
    let _ = HANDLE.set(handle);
    if let Some(f) = fallback {
        tracing::warn!("{}", f.0);
        eprintln!("warning: {}", f.0);
    }
    Ok(())
}

/// Applies a new level unless `RUST_LOG` wins; whether it applied.
/// The span capture of this process, once logging started.
pub(crate) fn capture() -> Option<&'static aether_telemetry::SpanCapture> {
    HANDLE.get().map(LogHandle::capture)
}

/// Sends exported spans still batched (the handle lives until exit, so it never drops).
pub(crate) fn flush_traces() {
    if let Some(h) = HANDLE.get() {
        h.flush_traces();
    }
}

pub(crate) fn set_level(level: &str) -> bool {
    HANDLE
        .get()
        .is_some_and(|h| matches!(h.set_level(level), Ok(true)))
}
