//! Background mounts: `aether mount` starts itself again with `--foreground` in a new process
//! group, waits for the child to say it is mounted (or to fail), and returns. The child's
//! logs go to `<cache_dir>/logs/aether.log`; on failure the parent shows their tail.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::runtime::MountPlan;

const READY_ENV: &str = "AETHER_READY_NOTIFY";
const READY_LINE: &str = "AETHER_READY";

/// Tells whoever started this runtime that the mount is up.
pub(crate) fn announce_ready(session: &str, dir: &Path) {
    if std::env::var_os(READY_ENV).is_some() {
        println!("{READY_LINE}");
    } else {
        println!(
            "mounted session {session} at {} (Ctrl-C or `aether stop --session-id {session}` to stop)",
            dir.display()
        );
    }
}

pub(crate) fn spawn_and_wait(plan: &MountPlan) -> Result<()> {
    let logs = plan.cache_dir.join("logs");
    aether_cache_sqlite::ensure_private_dir(&logs).map_err(|e| anyhow::anyhow!("{e}"))?;
    let log_path = logs.join("aether.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("open the log file {}", log_path.display()))?;
    let start_len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("find the aether executable")?;
    let args: Vec<_> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--auth-token-stdin")
        .chain(["--foreground".into()])
        .collect();
    let mut child = Command::new(exe)
        .args(args)
        .env(READY_ENV, "1")
        .env("AFS_AUTH_TOKEN", &plan.token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("start the mount runtime")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        match line {
            Ok(l) if l.trim() == READY_LINE => {
                println!(
                    "mounted session {} at {} (runtime pid {}; logs in {})",
                    plan.session_id,
                    plan.mount_dir.display(),
                    child.id(),
                    log_path.display()
                );
                return Ok(());
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let status = child.wait().context("wait for the mount runtime")?;
    let text = std::fs::read(&log_path).unwrap_or_default();
    let fresh = String::from_utf8_lossy(&text[(start_len as usize).min(text.len())..]).into_owned();
    let tail: Vec<&str> = fresh.lines().rev().take(20).collect();
    let reason = tail
        .iter()
        .find(|l| l.starts_with("aether: "))
        .map(|l| l.trim_start_matches("aether: ").to_owned())
        .unwrap_or_else(|| tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    bail!("the mount failed ({status}): {reason}")
}
