//! What telemetry adds to one FUSE request, measured in isolation (`cargo run --release -p
//! aether-telemetry --example op_cost`): the request's span under the mount's subscriber (JSON
//! logs to a file at `info`, against `off`) and its latency histogram record. The mount
//! benchmark's rates vary too much between identical runs to resolve a few percent; this does.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aether_telemetry::*;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider;

const N: u32 = 1_000_000;

fn per_op(f: impl Fn()) -> f64 {
    let t = Instant::now();
    for _ in 0..N {
        f();
    }
    t.elapsed().as_nanos() as f64 / f64::from(N)
}

fn main() {
    let level = std::env::args().nth(1).unwrap_or_else(|| "info".into());
    let dir = std::env::temp_dir().join(format!("aether-op-cost-{}", std::process::id()));
    let settings = LogSettings {
        level: level.clone(),
        format: Format::Json,
        destination: Destination::File {
            path: dir.join("aether.log"),
            rotation: Rotation::None,
            max_files: 1,
        },
        redaction: Redaction::Hash {
            salt: String::new(),
        },
        component: "aether".into(),
        session_id: Some("sess_cost".into()),
        sampling: Vec::new(),
        export_traces: false,
    };
    let (_handle, _) = init(&settings).expect("logging starts");
    let span = per_op(|| {
        let span = tracing::info_span!("fuse", otel.name = "lookup");
        let _entered = span.enter();
        black_box(&span);
    });
    let metrics = Metrics::new();
    let latency = metrics
        .provider()
        .meter("aether")
        .f64_histogram("aether_fuse_op_duration_seconds")
        .build();
    let record = per_op(|| {
        latency.record(
            black_box(Duration::from_micros(40)).as_secs_f64(),
            &[
                KeyValue::new("op", "lookup"),
                KeyValue::new("outcome", "ok"),
            ],
        );
    });
    println!(
        "log level {level}: span {span:.0} ns, histogram record {record:.0} ns per FUSE request"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
