//! The log layer against real files: JSON and text lines, redaction, rotation, sampling, and
//! an unusable log path.

use std::path::Path;

use tracing_subscriber::prelude::*;

use aether_telemetry::*;

fn settings(dir: &Path, format: Format, rotation: Rotation, redaction: Redaction) -> LogSettings {
    LogSettings {
        level: "debug".into(),
        format,
        destination: Destination::File {
            path: dir.join("logs/aether.log"),
            rotation,
            max_files: 3,
        },
        redaction,
        component: "aether".into(),
        session_id: None,
        sampling: vec![Sample {
            needle: "prefetch".into(),
            every: 4,
        }],
        export_traces: false,
    }
}

fn with_layer(s: &LogSettings, body: impl FnOnce()) {
    let (layer, fallback) = layer_for(s);
    assert_eq!(fallback, None);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), body);
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn json_lines_carry_context_and_hash_sensitive_fields() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(
        dir.path(),
        Format::Json,
        Rotation::None,
        Redaction::Hash {
            salt: "pepper".into(),
        },
    );
    with_layer(&s, || {
        let span = tracing::info_span!("mount", session_id = "sess_abc");
        let _g = span.enter();
        tracing::info!(
            path = "/home/alice/secret-plan.txt",
            bytes = 42u64,
            "wrote a file"
        );
    });
    let got = lines(&dir.path().join("logs/aether.log"));
    assert_eq!(got.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["component"], "aether");
    assert_eq!(v["session_id"], "sess_abc", "from the span");
    assert_eq!(v["message"], "wrote a file");
    assert_eq!(v["bytes"], 42);
    assert!(v["trace_id"].is_null());
    let hashed = v["path"].as_str().unwrap();
    assert!(
        hashed.starts_with("sha256:") && hashed.len() == 23,
        "{hashed}"
    );
    assert!(!got[0].contains("secret-plan"), "{}", got[0]);
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));

    let plain = settings(dir.path(), Format::Text, Rotation::None, Redaction::Off);
    std::fs::remove_file(dir.path().join("logs/aether.log")).unwrap();
    with_layer(&plain, || tracing::warn!(path = "/etc/hosts", "text line"));
    let got = lines(&dir.path().join("logs/aether.log"));
    assert!(
        got[0].contains(" WARN ") && got[0].contains("text line"),
        "{}",
        got[0]
    );
    assert!(
        got[0].contains("path=\"/etc/hosts\""),
        "redaction off: {}",
        got[0]
    );
}

#[test]
fn size_rotation_keeps_newest_first_and_at_most_n() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(
        dir.path(),
        Format::Text,
        Rotation::Size { max_bytes: 400 },
        Redaction::Off,
    );
    with_layer(&s, || {
        for i in 0..40 {
            tracing::info!(n = i, "line number {i:03}");
        }
    });
    let base = dir.path().join("logs/aether.log");
    let numbered = |n: usize| std::path::PathBuf::from(format!("{}.{n}", base.display()));
    assert!(base.exists() && numbered(1).exists() && numbered(2).exists() && numbered(3).exists());
    assert!(!numbered(4).exists(), "at most max_files rotated files");
    let newest = lines(&base).last().cloned().unwrap();
    assert!(newest.contains("line number 039"), "{newest}");
    let first_of = |p: &Path| -> u32 {
        let l = lines(p);
        l[0].split("line number ").nth(1).unwrap()[..3]
            .parse()
            .unwrap()
    };
    assert!(
        first_of(&numbered(1)) > first_of(&numbered(2)),
        ".1 is newer than .2"
    );
    for p in [base.clone(), numbered(1), numbered(2)] {
        assert!(
            std::fs::metadata(&p).unwrap().len() <= 400,
            "{} too big",
            p.display()
        );
    }
}

#[test]
fn chatty_debug_targets_are_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), Format::Json, Rotation::None, Redaction::Off);
    with_layer(&s, || {
        for i in 0..10 {
            tracing::debug!(target: "aether_mount::prefetch", i, "prefetched");
        }
        tracing::debug!(target: "aether_mount::other", "kept");
    });
    let got = lines(&dir.path().join("logs/aether.log"));
    let kept: Vec<i64> = got
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["i"].as_i64())
        .collect();
    assert_eq!(kept, [0, 4, 8], "one in four");
    assert!(got.iter().any(|l| l.contains("kept")));
}

#[test]
fn an_unusable_log_path_falls_back_to_stderr_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"file").unwrap();
    let (sink, fallback) = sink(&Destination::File {
        path: blocker.join("aether.log"),
        rotation: Rotation::None,
        max_files: 5,
    });
    assert!(matches!(sink, Sink::Stderr));
    let why = fallback.expect("a fallback").0;
    assert!(why.contains("not-a-dir") && why.contains("stderr"), "{why}");
}

#[test]
fn metrics_render_as_prometheus_text_and_are_served() {
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider;
    use std::io::{Read, Write};
    let metrics = Metrics::new();
    let meter = metrics.provider().meter("test");
    let flushes = meter.u64_counter("aether_journal_wal_flush_total").build();
    flushes.add(
        3,
        &[
            KeyValue::new("reason", "interval"),
            KeyValue::new("outcome", "ok"),
        ],
    );
    let latency = meter
        .f64_histogram("aether_fuse_op_duration_seconds")
        .with_boundaries(vec![0.001, 0.01])
        .build();
    latency.record(0.0005, &[KeyValue::new("op", "lookup")]);
    latency.record(0.005, &[KeyValue::new("op", "lookup")]);
    let _pending = meter
        .u64_observable_gauge("aether_journal_pending_entries")
        .with_callback(|o| o.observe(7, &[]))
        .build();
    let text = metrics.prometheus();
    assert!(
        text.contains("# TYPE aether_journal_wal_flush_total counter"),
        "{text}"
    );
    assert!(
        text.contains("aether_journal_wal_flush_total{outcome=\"ok\",reason=\"interval\"} 3"),
        "labels sorted by name: {text}"
    );
    assert!(
        text.contains("aether_fuse_op_duration_seconds_bucket{op=\"lookup\",le=\"0.001\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("aether_fuse_op_duration_seconds_bucket{op=\"lookup\",le=\"+Inf\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("aether_fuse_op_duration_seconds_count{op=\"lookup\"} 2"),
        "{text}"
    );
    assert!(text.contains("aether_journal_pending_entries 7"), "{text}");

    let addr = serve_metrics("127.0.0.1:0", metrics.clone()).expect("serve");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
    assert!(reply.contains("aether_journal_pending_entries 7"));
    let taken = serve_metrics(&addr.to_string(), metrics).unwrap_err();
    assert!(
        taken.contains(&addr.to_string()),
        "a taken port is named: {taken}"
    );
}
