//! Operator commands against a real mount: cache, debug and journal queries over the control
//! socket, `status` of a session that is not mounted, `metrics show`, `logs tail`, `fallback`.

use std::fs;
use std::io::Write;
use std::time::Duration;

use crate::{Mount, Server, aether};

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "aether failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn runtime_queries_answer_from_a_live_mount() {
    let server = Server::start();
    let session = server.new_session();
    let mut m = Mount::new(&server, &session, &[]);
    let mut f = fs::File::create(m.path("held.txt")).unwrap();
    f.write_all(b"x").unwrap();
    let cache = m.cache.to_str().unwrap().to_owned();
    let json = |verb: &[&str]| -> serde_json::Value {
        let mut args = verb.to_vec();
        args.extend(["--session-id", &session, "--cache-dir", &cache, "--json"]);
        serde_json::from_str(&ok(&aether(&server.endpoint, &args))).unwrap()
    };
    // doctor recognises the live mount instead of warning that the directory is not empty.
    let doctor = aether(
        &server.endpoint,
        &[
            "doctor",
            "--mount-dir",
            m.dir.to_str().unwrap(),
            "--cache-dir",
            &cache,
        ],
    );
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(said.contains("is a live aetherfs mount"), "{said}");
    let handles = json(&["debug", "handles"]);
    assert!(
        handles["handles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["path"] == "/held.txt" && h["write"] == true),
        "{handles}"
    );
    drop(f);
    let inspect = json(&["cache", "inspect"]);
    assert_eq!(inspect["ok"], true, "{inspect}");
    assert!(inspect["blobs"].as_u64().is_some(), "{inspect}");
    let throttle = json(&["journal", "throttle"]);
    assert!(throttle["backpressure"]["state"].is_string(), "{throttle}");
    let sessions = json(&["debug", "sessions"]);
    assert_eq!(sessions["sessions"][0]["session_id"], session.as_str());
    let cleared = json(&["cache", "clear"]);
    assert_eq!(cleared["ok"], true, "{cleared}");
    m.stop();
    assert_eq!(
        server.read(&session, "/held.txt").as_deref(),
        Some(&b"x"[..]),
        "clear kept unsent data"
    );
    let gone = m.run("status", &[]);
    assert!(!gone.status.success());
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(err.contains("is not mounted here"), "{err}");
    // Background mounts capture their log lines; `logs tail` finds them.
    let tail = ok(&aether(
        &server.endpoint,
        &[
            "logs",
            "tail",
            "-n",
            "3",
            "--cache-dir",
            m.cache.to_str().unwrap(),
        ],
    ));
    assert!(!tail.trim().is_empty(), "no log lines");
}

#[test]
fn metrics_show_and_fallback_use_the_resolved_configuration() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("aether.toml");
    fs::write(
        &config,
        "log_level = \"debug\"\nmetrics_addr = \"127.0.0.1:9777\"\n",
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let shown: serde_json::Value = serde_json::from_str(&ok(&aether(
        &server.endpoint,
        &["--config", c, "metrics", "show", "--json"],
    )))
    .unwrap();
    assert_eq!(shown["scrape_url"], "http://127.0.0.1:9777/metrics");
    assert!(
        shown["source"].as_str().unwrap().contains("aether.toml"),
        "{shown}"
    );
    ok(&aether(
        &server.endpoint,
        &["--config", c, "fallback", "enable"],
    ));
    let text = fs::read_to_string(&config).unwrap();
    assert!(
        text.contains("disable = true") && text.contains("log_level = \"debug\""),
        "{text}"
    );
    let session = server.new_session();
    let out = aether(
        &server.endpoint,
        &[
            "--config",
            c,
            "mount",
            "--session-id",
            &session,
            "--mount-dir",
            tmp.path().join("m").to_str().unwrap(),
        ],
    );
    assert!(
        ok(&out).contains("disabled"),
        "a disabled aether explains and exits 0"
    );
    ok(&aether(
        &server.endpoint,
        &["--config", c, "fallback", "disable"],
    ));
    assert!(
        fs::read_to_string(&config)
            .unwrap()
            .contains("disable = false")
    );
    let bad = aether(
        &server.endpoint,
        &[
            "logs",
            "tail",
            "--cache-dir",
            tmp.path().join("none").to_str().unwrap(),
        ],
    );
    assert!(
        ok(&bad).contains("logs go to stderr"),
        "no file: says where logs go"
    );
}

#[test]
fn doctor_reports_each_check_and_fails_on_a_broken_configuration() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = aether(
        &server.endpoint,
        &[
            "doctor",
            "--json",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--mount-dir",
            tmp.path().join("absent").to_str().unwrap(),
        ],
    );
    let checks: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let verdict = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .map(|c| c["verdict"].as_str().unwrap().to_owned())
    };
    // Root and /dev/fuse are where these tests run (the real-mount tests need them too).
    assert_eq!(verdict("fuse device").as_deref(), Some("PASS"), "{checks}");
    assert_eq!(verdict("mount privilege").as_deref(), Some("PASS"));
    assert_eq!(
        verdict("mount dir").as_deref(),
        Some("WARN"),
        "a missing mount dir is a WARN"
    );
    assert_eq!(verdict("cache dir").as_deref(), Some("PASS"));
    // A host setting, so either verdict, but never a FAIL.
    assert!(
        matches!(verdict("host tuning").as_deref(), Some("PASS" | "WARN")),
        "{checks}"
    );
    assert!(out.status.success(), "no FAIL, exit 0");
    let broken = tmp.path().join("broken.toml");
    fs::write(&broken, "log_level = \"loud\"\nlookup_ttl_secs = 0\n").unwrap();
    let out = aether(
        &server.endpoint,
        &["--config", broken.to_str().unwrap(), "doctor"],
    );
    assert!(!out.status.success(), "a FAIL exits non-zero");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL  configuration") && text.contains("fix:"),
        "{text}"
    );
    let file = tmp.path().join("a-file");
    fs::write(&file, b"x").unwrap();
    let out = aether(
        &server.endpoint,
        &["doctor", "--mount-dir", file.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("is not a directory"));
}

#[test]
fn fuse_check_and_cleanup_handle_a_mount_left_by_kill_9() {
    let server = Server::start();
    let session = server.new_session();
    let mut m = Mount::new(&server, &session, &[]);
    m.kill9();
    let cache = m.cache.to_str().unwrap().to_owned();
    let dir = m.dir.display().to_string();
    let check = |c: &str| -> serde_json::Value {
        serde_json::from_str(&ok(&aether(
            &server.endpoint,
            &["fuse", "check", "--json", "--cache-dir", c],
        )))
        .unwrap()
    };
    let found = check(&cache);
    let ours = found["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["mount_dir"] == dir.as_str())
        .cloned()
        .expect("the dead mount is listed");
    assert_eq!(ours["dead"], true, "{found}");
    assert!(
        found["stale_sockets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains(&session)),
        "{found}"
    );
    let cleaned = ok(&aether(
        &server.endpoint,
        &["fuse", "cleanup", "--cache-dir", &cache],
    ));
    assert!(
        cleaned.contains("detached dead mount") && cleaned.contains("removed stale control socket"),
        "{cleaned}"
    );
    let after = check(&cache);
    assert!(
        after["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["mount_dir"] != dir.as_str()),
        "{after}"
    );
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn scrape(port: u16) -> String {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

/// How many kernel requests of kind `op` the mount whose metrics listen on `port` has served.
pub(crate) fn fuse_requests(port: u16, op: &str) -> u64 {
    let series = format!("aether_fuse_op_duration_seconds_count{{op=\"{op}\"");
    scrape(port)
        .lines()
        .filter(|l| l.starts_with(&series))
        .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn a_mount_serves_its_metrics_and_survives_a_taken_port() {
    let server = Server::start();
    let session = server.new_session();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    server.write(&session, "/remote.txt", b"from the server");
    let mut m = Mount::new(&server, &session, &["--metrics-addr", &addr]);
    fs::write(m.path("a.txt"), b"metrics").unwrap();
    assert_eq!(fs::read(m.path("remote.txt")).unwrap(), b"from the server");
    // The interval policy's timer forces the journal to disk within milliseconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = scrape(port);
        if text.contains("aether_journal_wal_flush_total{outcome=\"ok\",reason=\"interval\"} ")
            && !text
                .contains("aether_journal_wal_flush_total{outcome=\"ok\",reason=\"interval\"} 0\n")
            || std::time::Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for name in [
        "aether_journal_pending_entries",
        "aether_journal_pending_bytes",
        "aether_journal_oldest_entry_age_seconds",
        "aether_fuse_ops_total",
        "aether_fuse_op_duration_seconds_bucket{op=\"write\",outcome=\"ok\"",
        "aether_fuse_op_duration_seconds_count{op=\"lookup\"",
        "aether_remote_request_duration_seconds_count{route=\"GET /v1/sessions/{id}/files\",status=\"200\"}",
        "aether_journal_wal_flush_total{outcome=\"error\",reason=\"backlog\"}",
        "aether_journal_sync_count_total{policy=\"interval\"}",
        "aether_kernel_invalidations_total",
        "aether_cache_evicted_bytes_total",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{prefix} missing:\n{text}"))
    };
    assert!(value("aether_written_bytes_total") >= 7.0, "{text}");
    assert!(value("aether_read_bytes_total") >= 15.0, "{text}");
    assert!(
        value("aether_journal_wal_flush_total{outcome=\"ok\",reason=\"interval\"}") >= 1.0,
        "{text}"
    );
    assert!(
        value("aether_journal_sync_count_total{policy=\"interval\"}") >= 1.0,
        "{text}"
    );
    let ops: f64 = text
        .lines()
        .find(|l| l.starts_with("aether_fuse_ops_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(ops > 0.0, "{text}");
    // A second mount on the same metrics port still mounts (the port is only a warning).
    let other = server.new_session();
    let mut second = Mount::new(&server, &other, &["--metrics-addr", &addr]);
    fs::write(second.path("b.txt"), b"still works").unwrap();
    second.stop();
    m.stop();
    assert_eq!(
        server.read(&other, "/b.txt").as_deref(),
        Some(&b"still works"[..])
    );
}

/// `aether trace capture` of `session`'s runtime, with `extra` flags.
fn trace_capture(
    endpoint: &str,
    session: &str,
    cache: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "trace",
        "capture",
        "--session-id",
        session,
        "--cache-dir",
        cache,
    ];
    args.extend_from_slice(extra);
    aether(endpoint, &args)
}

#[test]
fn trace_capture_records_the_spans_of_a_window_of_work() {
    let server = Server::start();
    let session = server.new_session();
    for i in 0..5 {
        server.write(&session, &format!("/t/f{i}"), b"traced");
    }
    let m = Mount::new(&server, &session, &[]);
    let out_file = m.cache.parent().unwrap().join("capture.jsonl");
    let out_arg = out_file.display().to_string();
    let session_arg = session.clone();
    let cache_arg = m.cache.display().to_string();
    let endpoint = server.endpoint.clone();
    let recorder = std::thread::spawn(move || {
        trace_capture(
            &endpoint,
            &session_arg,
            &cache_arg,
            &["--seconds", "3", "--output", &out_arg, "--json"],
        )
    });
    // Work inside the window: reads that ask the server.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..5 {
        assert_eq!(fs::read(m.path(&format!("t/f{i}"))).unwrap(), b"traced");
    }
    let out = recorder.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["ok"], true, "{reply}");
    let text = fs::read_to_string(&out_file).unwrap();
    let spans: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(spans.len() as u64, reply["spans"].as_u64().unwrap());
    let names: Vec<&str> = spans.iter().filter_map(|s| s["name"].as_str()).collect();
    assert!(names.contains(&"read"), "{names:?}");
    let fetch = spans
        .iter()
        .find(|s| s["name"] == "GET /v1/sessions/{id}/files")
        .unwrap_or_else(|| panic!("no content request among {names:?}"));
    let parent = fetch["parent_id"]
        .as_u64()
        .expect("the request has a parent");
    assert!(
        spans.iter().any(|s| s["span_id"].as_u64() == Some(parent)),
        "the request's parent (the kernel operation) was captured too"
    );
    assert!(spans.iter().all(|s| s["duration_us"].is_u64()));
    // Without --json and off a terminal, progress comes as plain lines on stderr.
    let cache = m.cache.to_str().unwrap();
    let plain = trace_capture(&server.endpoint, &session, cache, &["--seconds", "1"]);
    assert!(plain.status.success());
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("recording spans: 1 s left"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let said = String::from_utf8_lossy(&plain.stdout);
    let written = said
        .trim()
        .split(" spans written to ")
        .nth(1)
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        written.starts_with(m.cache.join("traces").to_str().unwrap()),
        "the default file is under the cache dir: {said}"
    );
    // Bad input is refused with the rule named.
    let bad = trace_capture(&server.endpoint, &session, cache, &["--seconds", "0"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("from 1 to 300"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn a_malformed_otlp_endpoint_stops_the_mount_with_the_variable_named() {
    let server = Server::start();
    let session = server.new_session();
    let dir = tempfile::tempdir().unwrap();
    let mount_dir = dir.path().join("mnt");
    let out = crate::aether_with_env(
        &server.endpoint,
        &[
            "mount",
            "--session-id",
            &session,
            "--mount-dir",
            mount_dir.to_str().unwrap(),
            "--cache-dir",
            dir.path().join("cache").to_str().unwrap(),
        ],
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            "collector:4318".to_owned(),
        )],
    );
    assert!(!out.status.success(), "mounted with a malformed endpoint");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{said}");
    assert!(
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(mount_dir.to_str().unwrap()),
        "nothing was mounted"
    );
}

#[test]
fn a_foreign_control_socket_is_refused_and_left_alone() {
    let server = Server::start();
    let session = server.new_session();
    let dir = tempfile::tempdir().unwrap();
    // A file where the control socket would go is not ours to delete.
    let file = dir.path().join("precious");
    fs::write(&file, b"keep me").unwrap();
    let out = aether(
        &server.endpoint,
        &[
            "mount",
            "--session-id",
            &session,
            "--mount-dir",
            dir.path().join("mnt").to_str().unwrap(),
            "--cache-dir",
            dir.path().join("cache").to_str().unwrap(),
            "--control-socket",
            file.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("is not a socket"), "{said}");
    assert_eq!(fs::read(&file).unwrap(), b"keep me");
    // A socket of another program: its answer is named for what it is.
    let foreign = dir.path().join("foreign.sock");
    let listener = std::os::unix::net::UnixListener::bind(&foreign).unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        if let Ok((conn, _)) = listener.accept() {
            let mut line = String::new();
            let _ = std::io::BufReader::new(&conn).read_line(&mut line);
            let _ = (&conn).write_all(b"220 hello from something else\n");
        }
    });
    let out = aether(
        &server.endpoint,
        &[
            "status",
            "--session-id",
            &session,
            "--socket",
            foreign.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("not an aether runtime's reply"), "{said}");
}

#[test]
fn version_prints_text_or_json() {
    let text = ok(&aether("http://127.0.0.1:9", &["version"]));
    assert!(text.starts_with("aether 0.0.0 (commit "), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&aether("http://127.0.0.1:9", &["version", "--json"]))).unwrap();
    assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    assert!(json["target"].as_str().unwrap().contains("linux"), "{json}");
}
