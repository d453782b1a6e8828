//! The mount's metrics: FUSE request and server request latencies, observable instruments
//! over the engine's journal and counters; served as Prometheus text at `metrics_addr` (a port
//! already taken is a warning, not a failure) and exported over OTLP when asked.

use std::sync::Arc;

use aether_ports::local_cache::{JournalStats, LocalCache};
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider;

use crate::runtime::MountEngine;

/// The mount's metrics: made before the client and the mount so that both report into them.
pub(crate) struct MountMetrics {
    metrics: aether_telemetry::Metrics,
    meter: opentelemetry::metrics::Meter,
}

/// The journal's figures, read at most once per scrape (readings within 250 ms are reused).
#[derive(Clone)]
struct JournalReading {
    engine: Arc<MountEngine>,
    last: Arc<std::sync::Mutex<Option<(std::time::Instant, JournalStats)>>>,
}

impl JournalReading {
    fn new(engine: Arc<MountEngine>) -> Self {
        JournalReading {
            engine,
            last: Arc::default(),
        }
    }

    fn get(&self) -> JournalStats {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match &*last {
            Some((at, stats)) if at.elapsed() < std::time::Duration::from_millis(250) => *stats,
            _ => {
                let stats = self.engine.cache().journal_stats();
                *last = Some((std::time::Instant::now(), stats));
                stats
            }
        }
    }
}

/// Latency buckets from a cached answer (microseconds) to a slow server (seconds).
const LATENCY_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
];

pub(crate) fn new() -> MountMetrics {
    let env: Vec<(String, String)> = std::env::vars().collect();
    // A malformed endpoint was refused when logging started; here it can only mean "off".
    let metrics = match aether_telemetry::export_wanted(&env, "metrics") {
        Ok(true) => aether_telemetry::Metrics::exporting("aether").unwrap_or_else(|e| {
            tracing::warn!("{e}; metrics are not exported");
            aether_telemetry::Metrics::new()
        }),
        _ => aether_telemetry::Metrics::new(),
    };
    let meter = metrics.provider().meter("aether");
    MountMetrics { metrics, meter }
}

impl MountMetrics {
    /// Records each kernel request's latency by operation and outcome.
    pub(crate) fn fuse_observer(&self) -> aether_fuse::OpObserver {
        let latency = self
            .meter
            .f64_histogram("aether_fuse_op_duration_seconds")
            .with_description("Time to answer a kernel request, by operation and outcome")
            .with_boundaries(LATENCY_BUCKETS.to_vec())
            .build();
        aether_fuse::OpObserver(Arc::new(move |op, took, ok| {
            latency.record(
                took.as_secs_f64(),
                &[
                    KeyValue::new("op", op),
                    KeyValue::new("outcome", if ok { "ok" } else { "error" }),
                ],
            );
        }))
    }

    /// Records each server request's latency, and its failures, by route and status.
    pub(crate) fn request_observer(&self) -> aether_http_client::RequestObserver {
        let latency = self
            .meter
            .f64_histogram("aether_remote_request_duration_seconds")
            .with_description("Time to a server reply's head, by route and status (0: no reply)")
            .with_boundaries(LATENCY_BUCKETS.to_vec())
            .build();
        let errors = self
            .meter
            .u64_counter("aether_remote_request_errors_total")
            .with_description("Server requests that failed, by route and status (0: no reply)")
            .build();
        aether_http_client::RequestObserver(Arc::new(move |route, status, took| {
            let attrs = [
                KeyValue::new("route", route.to_owned()),
                KeyValue::new("status", i64::from(status)),
            ];
            latency.record(took.as_secs_f64(), &attrs);
            if status == 0 || status >= 400 {
                errors.add(1, &attrs);
            }
        }))
    }

    /// Registers the instruments that read the engine and starts serving at `addr`; returns
    /// the metrics (kept alive by the caller).
    pub(crate) fn watch(self, engine: &Arc<MountEngine>, addr: &str) -> aether_telemetry::Metrics {
        let MountMetrics { metrics, meter } = self;
        let gauge = |name: &'static str, help: &'static str, read: fn(&MountEngine) -> u64| {
            let e = engine.clone();
            meter
                .u64_observable_gauge(name)
                .with_description(help)
                .with_callback(move |o| o.observe(read(&e), &[]))
                .build()
        };
        let counter = |name: &'static str, help: &'static str, read: fn(&MountEngine) -> u64| {
            let e = engine.clone();
            meter
                .u64_observable_counter(name)
                .with_description(help)
                .with_callback(move |o| o.observe(read(&e), &[]))
                .build()
        };
        // The instruments live as long as the provider once registered. The three journal
        // gauges share one reading per scrape: each reading is a query that holds the
        // journal, which every change being made waits for.
        let journal = JournalReading::new(engine.clone());
        let journal_gauge =
            |name: &'static str, help: &'static str, read: fn(&JournalStats) -> u64| {
                let j = journal.clone();
                meter
                    .u64_observable_gauge(name)
                    .with_description(help)
                    .with_callback(move |o| o.observe(read(&j.get()), &[]))
                    .build()
            };
        let _ = journal_gauge(
            "aether_journal_pending_entries",
            "Journal entries not yet acknowledged by the server",
            |j| j.pending_entries,
        );
        let _ = journal_gauge(
            "aether_journal_pending_bytes",
            "Bytes of journaled changes not yet acknowledged by the server",
            |j| j.pending_bytes,
        );
        let _ = journal_gauge(
            "aether_journal_oldest_entry_age_seconds",
            "Age of the oldest unacknowledged journal entry",
            |j| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos() as i64;
                j.oldest_appended_at
                    .map_or(0, |t| ((now - t.nanos()).max(0) / 1_000_000_000) as u64)
            },
        );
        let _ = gauge(
            "aether_open_handles",
            "Open file and directory handles",
            |e| e.status().open_handles,
        );
        type Read = fn(&MountEngine) -> u64;
        let counters: [(&'static str, &'static str, Read); 10] = [
            (
                "aether_fuse_ops_total",
                "File system operations served",
                |e| e.status().ops,
            ),
            (
                "aether_cache_hits_total",
                "Lookups answered from the cache",
                |e| e.status().cache_hits,
            ),
            (
                "aether_cache_misses_total",
                "Lookups that asked the server",
                |e| e.status().cache_misses,
            ),
            (
                "aether_remote_errors_total",
                "Failed requests to the server",
                |e| e.status().remote_errors,
            ),
            (
                "aether_journal_written_back_total",
                "Journal entries the server acknowledged",
                |e| e.status().written_back,
            ),
            (
                "aether_journal_rejected_total",
                "Journal entries the server refused for good",
                |e| e.status().rejected,
            ),
            (
                "aether_read_bytes_total",
                "Bytes read through the mount",
                |e| e.status().bytes_read,
            ),
            (
                "aether_written_bytes_total",
                "Bytes written through the mount",
                |e| e.status().bytes_written,
            ),
            (
                "aether_cache_evicted_bytes_total",
                "Bytes of clean content dropped from the cache (its disk ran short, or it outgrew cache_max_bytes)",
                |e| e.status().evicted_bytes,
            ),
            (
                "aether_kernel_invalidations_total",
                "Kernel cache entries invalidated after a remote change",
                |e| e.status().invalidations,
            ),
        ];
        for (name, help, read) in counters {
            let _ = counter(name, help, read);
        }
        let e = engine.clone();
        let _ = meter
            .u64_observable_counter("aether_journal_wal_flush_total")
            .with_description("Forced syncs of the write journal, by reason and outcome")
            .with_callback(move |o| {
                for (reason, outcome, n) in e.cache().journal_counters().flushes {
                    o.observe(
                        n,
                        &[
                            KeyValue::new("reason", reason),
                            KeyValue::new("outcome", outcome),
                        ],
                    );
                }
            })
            .build();
        let e = engine.clone();
        let _ = meter
            .u64_observable_counter("aether_journal_sync_count_total")
            .with_description("Syncs of the write journal to stable storage, by policy in force")
            .with_callback(move |o| {
                for (policy, n) in e.cache().journal_counters().syncs {
                    o.observe(n, &[KeyValue::new("policy", policy)]);
                }
            })
            .build();
        match aether_telemetry::serve_metrics(addr, metrics.clone()) {
            Ok(bound) => tracing::info!(%bound, "metrics at http://{bound}/metrics"),
            Err(e) => tracing::warn!("{e}; the mount works without a metrics endpoint"),
        }
        metrics
    }
}
