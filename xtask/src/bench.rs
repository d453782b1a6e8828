//! `cargo xtask bench <suite>`: builds release binaries and runs a benchmark program that prints
//! its figures (never a pass/fail on time).

use std::process::Command;

use anyhow::{Context, Result, bail};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let quick = args.iter().any(|a| a == "--quick");
    match args.first().map(String::as_str) {
        Some("server") => {
            for tool in ["wrk", "nginx"] {
                if Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .map(|o| !o.status.success())
                    .unwrap_or(true)
                {
                    eprintln!(
                        "note: {tool} is missing (apt-get install wrk nginx-light); its row will be incomplete"
                    );
                }
            }
            cargo(&["build", "--release", "-p", "afs-server"])?;
            let mut bench = vec!["bench", "-p", "afs-server", "--bench", "server", "--"];
            if quick {
                bench.push("--quick");
            }
            cargo(&bench)
        }
        Some(which @ ("mount" | "memory" | "telemetry")) => {
            cargo(&["build", "--release", "-p", "aether", "-p", "afs-server"])?;
            let script = crate::tidy::workspace_root().join(format!("bench/{which}.sh"));
            let mut cmd = Command::new("bash");
            cmd.arg(script);
            if quick {
                cmd.arg("--quick");
            }
            if which == "mount" {
                for switch in ["--fuse-wake-here", "--guest-halt-poll"] {
                    if args.iter().any(|a| a == switch) {
                        cmd.arg(switch);
                    }
                }
            }
            let status = cmd
                .status()
                .with_context(|| format!("run bench/{which}.sh"))?;
            if !status.success() {
                bail!("bench/{which}.sh failed");
            }
            Ok(())
        }
        Some(which @ ("edits" | "churn" | "sqlite")) => {
            // `edits`: small edits of a large file, each with fsync; `churn`: memory, inodes,
            // staging and cache size under file churn; `sqlite`: a database's commits. All
            // through a mount of this build.
            cargo(&["build", "--release", "-p", "aether", "-p", "afs-server"])?;
            let root = crate::tidy::workspace_root();
            let status = Command::new("bash")
                .arg(root.join(format!("bench/{which}.sh")))
                .arg(root.join("target/release"))
                .status()
                .with_context(|| format!("run bench/{which}.sh"))?;
            if !status.success() {
                bail!("bench/{which}.sh failed");
            }
            Ok(())
        }
        Some("workflow") => {
            if Command::new("sh")
                .args(["-c", "command -v redis-benchmark"])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
            {
                eprintln!(
                    "note: redis-benchmark is missing (apt-get install redis-server redis-tools); the peer column will be empty"
                );
            }
            cargo(&["build", "--release", "-p", "afs-server"])?;
            let mut bench = vec!["bench", "-p", "afs-server", "--bench", "workflow", "--"];
            if quick {
                bench.push("--quick");
            }
            cargo(&bench)
        }
        _ => bail!(
            "usage: cargo xtask bench <server | mount | memory | telemetry | edits | churn | sqlite | workflow> [--quick] (mount also: [--fuse-wake-here] [--guest-halt-poll])"
        ),
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(args)
        .status()
        .with_context(|| format!("run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}
