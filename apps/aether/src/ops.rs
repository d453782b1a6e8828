//! Operator commands that need no server: where logs and metrics go, `logs tail`, and
//! `fallback enable|disable` (writing `disable` into the resolved `aether.toml`).

use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::config::AetherConfig;

/// Where this configuration's log lines end up, and why.
pub(crate) enum LogPlace {
    File(PathBuf),
    /// A background runtime's stderr, captured by `aether mount` into this file.
    Captured(PathBuf),
    Stream(&'static str),
}

pub(crate) fn log_place(config: &AetherConfig, cache_dir: &Path) -> LogPlace {
    let default_file = cache_dir.join("logs").join("aether.log");
    match config.logging.destination.as_str() {
        "file" => LogPlace::File(config.logging.path.clone().unwrap_or(default_file)),
        dest if default_file.exists() => {
            let _ = dest;
            LogPlace::Captured(default_file)
        }
        "stdout" => LogPlace::Stream("stdout"),
        _ => LogPlace::Stream("stderr"),
    }
}

/// Prints the last `n` lines of `path`, then (with `follow`) what is appended, forever.
pub(crate) fn tail(path: &Path, n: usize, follow: bool) -> Result<()> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("open log file {}", path.display()))?;
    let mut text = String::new();
    f.read_to_string(&mut text)
        .with_context(|| format!("read log file {}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(n)..] {
        println!("{l}");
    }
    if !follow {
        return Ok(());
    }
    let mut pos = f.stream_position()?;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if len < pos {
            // Rotated or truncated: start over at the new file's beginning.
            f = std::fs::File::open(path)?;
            pos = 0;
        }
        f.seek(SeekFrom::Start(pos))?;
        let mut reader = std::io::BufReader::new(&f);
        let mut line = String::new();
        while reader.read_line(&mut line)? > 0 {
            print!("{line}");
            line.clear();
        }
        pos = f.stream_position()?;
    }
}

/// Sets `disable` in `file` (created if missing), keeping every other setting.
pub(crate) fn set_disable(file: &Path, disable: bool) -> Result<()> {
    let mut table: toml::Table = if file.exists() {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("read {}", file.display()))?;
        text.parse()
            .with_context(|| format!("{} is not valid TOML; fix it first", file.display()))?
    } else {
        toml::Table::new()
    };
    table.insert("disable".into(), toml::Value::Boolean(disable));
    let text = toml::to_string(&table).context("encode the configuration")?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(file, text).with_context(|| format!("write {}", file.display()))
}

/// `host:port` of a metrics address, or an error naming it.
pub(crate) fn scrape_url(addr: &str) -> Result<String> {
    if addr.parse::<std::net::SocketAddr>().is_err() {
        bail!("metrics_addr {addr:?} is not host:port");
    }
    Ok(format!("http://{addr}/metrics"))
}
