//! The mount's metrics: observable instruments over the engine's journal and counters, served
//! as Prometheus text at `metrics_addr` (a port already taken is a warning, not a failure).

use std::sync::Arc;

use aether_ports::local_cache::LocalCache;
use opentelemetry::metrics::MeterProvider;

use crate::runtime::MountEngine;

/// Registers the instruments and starts serving; returns the metrics (kept alive by the caller).
pub(crate) fn start(engine: &Arc<MountEngine>, addr: &str) -> aether_telemetry::Metrics {
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
    // The instruments live as long as the provider once registered.
    let _ = gauge(
        "aether_journal_pending_entries",
        "Journal entries not yet acknowledged by the server",
        |e| e.cache().journal_stats().pending_entries,
    );
    let _ = gauge(
        "aether_journal_pending_bytes",
        "Bytes of journaled changes not yet acknowledged by the server",
        |e| e.cache().journal_stats().pending_bytes,
    );
    let _ = gauge(
        "aether_journal_oldest_entry_age_seconds",
        "Age of the oldest unacknowledged journal entry",
        |e| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as i64;
            e.cache()
                .journal_stats()
                .oldest_appended_at
                .map_or(0, |t| ((now - t.nanos()).max(0) / 1_000_000_000) as u64)
        },
    );
    let _ = gauge(
        "aether_open_handles",
        "Open file and directory handles",
        |e| e.status().open_handles,
    );
    let _ = counter(
        "aether_fuse_ops_total",
        "File system operations served",
        |e| e.status().ops,
    );
    let _ = counter(
        "aether_cache_hits_total",
        "Lookups answered from the cache",
        |e| e.status().cache_hits,
    );
    let _ = counter(
        "aether_cache_misses_total",
        "Lookups that asked the server",
        |e| e.status().cache_misses,
    );
    let _ = counter(
        "aether_remote_errors_total",
        "Failed requests to the server",
        |e| e.status().remote_errors,
    );
    let _ = counter(
        "aether_journal_written_back_total",
        "Journal entries the server acknowledged",
        |e| e.status().written_back,
    );
    let _ = counter(
        "aether_journal_rejected_total",
        "Journal entries the server refused for good",
        |e| e.status().rejected,
    );
    match aether_telemetry::serve_metrics(addr, metrics.clone()) {
        Ok(bound) => tracing::info!(%bound, "metrics at http://{bound}/metrics"),
        Err(e) => tracing::warn!("{e}; the mount works without a metrics endpoint"),
    }
    metrics
}
