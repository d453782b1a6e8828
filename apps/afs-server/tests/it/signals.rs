//! The real binary: SIGTERM drains and exits 0, and acknowledged writes survive a restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(data: &std::path::Path) -> (Child, String) {
    spawn_with(data, &[], &[("AFS_SERVER_LOG_LEVEL", "warn")])
}

/// The real binary on a free port over `data`, with more flags and environment.
pub(crate) fn spawn_with(
    data: &std::path::Path,
    flags: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_afs-server"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(flags)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn afs-server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("listening line");
    let addr = afs_server::parse_listening_line(&line)
        .expect("afs-server prints where it listens")
        .to_owned();
    (child, addr)
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly_and_acknowledged_writes_survive() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addr) = spawn(dir.path());
    let http = reqwest::Client::new();
    let token = "11111111-1111-1111-1111-111111111111:sig";
    let s: serde_json::Value = http
        .post(format!("http://{addr}/v1/sessions"))
        .bearer_auth(token)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let sid = s["id"].as_str().expect("id").to_owned();
    let put = http
        .put(format!(
            "http://{addr}/v1/sessions/{sid}/files?path=/kept.txt"
        ))
        .bearer_auth(token)
        .body("acknowledged")
        .send()
        .await
        .expect("put");
    assert!(put.status().is_success());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit =
        wait_exit(&mut child, Duration::from_secs(20)).expect("afs-server exits after SIGTERM");
    assert!(exit.success(), "clean exit, got {exit:?}");
    let (mut child, addr) = spawn(dir.path());
    let got = http
        .get(format!(
            "http://{addr}/v1/sessions/{sid}/files?path=/kept.txt"
        ))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert_eq!(got, "acknowledged");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_log_level_and_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("server.log");
    let config = dir.path().join("afs-server.toml");
    let settings = |level: &str| {
        format!(
            "log_level = \"{level}\"\nlog_destination = \"file\"\nlog_path = \"{}\"\n",
            log.display()
        )
    };
    std::fs::write(&config, settings("warn")).expect("write config");
    // No log level in the environment: it would outrank the file that SIGHUP re-reads.
    let (mut child, addr) = spawn_with(
        &dir.path().join("data"),
        &["--config".as_ref(), config.as_os_str()],
        &[],
    );
    let hup = |pid: u32| {
        Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
    };
    let logged = |needle: &str| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(needle)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };
    std::fs::write(&config, settings("info")).expect("write config");
    hup(child.id());
    assert!(logged("log level changed"), "no reload in the log");
    // A broken file keeps the running settings, and says so.
    std::fs::write(&config, "log_levle = \"debug\"\n").expect("write config");
    hup(child.id());
    assert!(logged("keeping the current one"), "no refusal in the log");
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .expect("the server still answers");
    assert!(health.status().is_success());
    assert!(
        child.try_wait().expect("poll").is_none(),
        "SIGHUP ended the server"
    );
    let _ = child.kill();
    let _ = child.wait();
}
