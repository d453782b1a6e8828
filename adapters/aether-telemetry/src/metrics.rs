//! Metrics through the OpenTelemetry API: one meter provider per process whose readings are
//! rendered as Prometheus text (for the server's `/metrics` and the client's `metrics_addr`).

use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};

/// The manual reader, shared between the provider (which drives it) and the renderer.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The process's metrics: instruments are made from `provider()` (or the global provider,
/// which `install` sets); `prometheus()` renders what they hold.
#[derive(Clone)]
pub struct Metrics {
    provider: SdkMeterProvider,
    reader: SharedReader,
}

impl Metrics {
    pub fn new() -> Metrics {
        let reader = SharedReader(Arc::new(ManualReader::builder().build()));
        let provider = SdkMeterProvider::builder()
            .with_reader(reader.clone())
            .build();
        Metrics { provider, reader }
    }

    /// Like [`Metrics::new`], and every reading also goes to the OTLP collector of the
    /// standard environment (every `OTEL_METRIC_EXPORT_INTERVAL`, 60 s unless set), as
    /// `service`.
    pub fn exporting(service: &str) -> Result<Metrics, String> {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .build()
            .map_err(|e| format!("OTLP metric export: {e}"))?;
        let reader = SharedReader(Arc::new(ManualReader::builder().build()));
        let provider = SdkMeterProvider::builder()
            .with_resource(crate::otlp::resource(service))
            .with_reader(reader.clone())
            .with_periodic_exporter(exporter)
            .build();
        Ok(Metrics { provider, reader })
    }

    /// Makes this the global provider, so adapters can use `opentelemetry::global::meter`.
    pub fn install(&self) {
        opentelemetry::global::set_meter_provider(self.provider.clone());
    }

    pub fn provider(&self) -> &SdkMeterProvider {
        &self.provider
    }

    /// Every instrument's current readings as Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut rm = ResourceMetrics::default();
        if self.reader.collect(&mut rm).is_err() {
            return String::new();
        }
        let mut out = String::new();
        for scope in rm.scope_metrics() {
            for m in scope.metrics() {
                let name = sanitize(m.name());
                match m.data() {
                    AggregatedMetrics::F64(d) => render(&mut out, &name, m.description(), d, |v| v),
                    AggregatedMetrics::U64(d) => {
                        render(&mut out, &name, m.description(), d, |v| v as f64)
                    }
                    AggregatedMetrics::I64(d) => {
                        render(&mut out, &name, m.description(), d, |v| v as f64)
                    }
                }
            }
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = attrs
        .map(|kv| {
            let v = kv
                .value
                .as_str()
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{}=\"{v}\"", sanitize(kv.key.as_str()))
        })
        .collect();
    // The SDK does not keep attribute order; sorted labels make every scrape read the same.
    parts.sort();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn render<T: Copy>(
    out: &mut String,
    name: &str,
    help: &str,
    data: &MetricData<T>,
    f: impl Fn(T) -> f64,
) {
    if !help.is_empty() {
        let _ = writeln!(out, "# HELP {name} {}", help.replace('\n', " "));
    }
    match data {
        MetricData::Gauge(g) => {
            let _ = writeln!(out, "# TYPE {name} gauge");
            for p in g.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(p.attributes(), None),
                    number(f(p.value()))
                );
            }
        }
        MetricData::Sum(s) => {
            let kind = if s.is_monotonic() { "counter" } else { "gauge" };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for p in s.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(p.attributes(), None),
                    number(f(p.value()))
                );
            }
        }
        MetricData::Histogram(h) => {
            let _ = writeln!(out, "# TYPE {name} histogram");
            for p in h.data_points() {
                let mut cumulative = 0u64;
                let bounds: Vec<f64> = p.bounds().collect();
                let counts: Vec<u64> = p.bucket_counts().collect();
                for (i, c) in counts.iter().enumerate() {
                    cumulative += c;
                    let le = bounds.get(i).copied().map_or("+Inf".to_owned(), number);
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {cumulative}",
                        labels(p.attributes(), Some(("le", le)))
                    );
                }
                let _ = writeln!(
                    out,
                    "{name}_sum{} {}",
                    labels(p.attributes(), None),
                    number(f(p.sum()))
                );
                let _ = writeln!(
                    out,
                    "{name}_count{} {}",
                    labels(p.attributes(), None),
                    p.count()
                );
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// Serves `GET /metrics` on `addr` from a thread (the client has no web framework); a port
/// already taken is returned as an error for the caller to report as a warning.
pub fn serve(addr: &str, metrics: Metrics) -> Result<std::net::SocketAddr, String> {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    std::thread::Builder::new()
        .name("aether-metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    continue;
                }
                // Drain the headers.
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                let (status, body) = if first.starts_with("GET /metrics") {
                    ("200 OK", metrics.prometheus())
                } else {
                    ("404 Not Found", "only /metrics is served here\n".to_owned())
                };
                let mut s = &stream;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(bound)
}
