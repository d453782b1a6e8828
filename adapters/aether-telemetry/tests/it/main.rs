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
