//! afs-server composition root (app layer): configuration, wiring of the service over the
//! SQLite metadata store and file blob store, and the HTTP listener.

pub mod config;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::net::TcpListener;

use aether_domain::Timestamp;
use aether_http_server::{AuthMode, Draining, HttpConfig, HttpLimits, TokenTable};
use aether_import::HostImporter;
use aether_ports::store::{Environment, time_ordered_suffix};
use aether_service::{DeploymentGauges, Limits, Service};
use aether_store_sqlite::{FileBlobStore, SqliteMetadataStore};

pub use config::ServerConfig;

/// The real world: the system clock and OS randomness. Ids minted within one millisecond
/// continue from the previous one, so ids sort in creation order within a process.
pub struct SystemEnvironment {
    last: std::sync::Mutex<(u64, u64)>,
}

impl Default for SystemEnvironment {
    fn default() -> Self {
        SystemEnvironment {
            last: std::sync::Mutex::new((0, 0)),
        }
    }
}

impl Environment for SystemEnvironment {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    fn id_suffix(&self) -> String {
        let now = self.now();
        let millis = (now.nanos().max(0) / 1_000_000) as u64;
        let random = uuid::Uuid::new_v4().as_u64_pair().0 >> 1;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let next = if millis <= last.0 {
            (last.0, last.1.wrapping_add(1))
        } else {
            (millis, random)
        };
        *last = next;
        time_ordered_suffix(Timestamp(next.0 as i64 * 1_000_000), next.1)
    }
}

/// Runs import jobs on the current tokio runtime.
struct TokioSpawner;

impl aether_ports::store::Spawner for TokioSpawner {
    fn spawn(
        &self,
        task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>,
    ) {
        tokio::spawn(task);
    }
}

/// The service as deployed by default: SQLite metadata, file blobs, system environment.
pub type EmbeddedService = Service<SqliteMetadataStore, FileBlobStore, SystemEnvironment>;

/// Opens the stores named by the configuration and builds the service.
pub fn build_service(cfg: &ServerConfig) -> Result<EmbeddedService> {
    let meta_path = cfg.metadata_path()?;
    let blob_path = cfg.blobs_path()?;
    if let Some(dir) = meta_path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create data directory {}", dir.display()))?;
    }
    let meta = SqliteMetadataStore::open(&meta_path, cfg.sqlite_readers).map_err(|e| {
        anyhow::anyhow!("open metadata store {}: {}", meta_path.display(), e.message)
    })?;
    let key_path = cfg.secrets_key_path();
    let sealer = aether_crypto::KeySealer::from_file(&key_path)
        .map_err(|e| anyhow::anyhow!("secrets key {}: {}", key_path.display(), e.message))?;
    let blobs = FileBlobStore::open(&blob_path, cfg.fsync)
        .map_err(|e| anyhow::anyhow!("open blob store {}: {}", blob_path.display(), e.message))?;
    Ok(Service::new(
        meta,
        blobs,
        SystemEnvironment::default(),
        Limits {
            max_file_bytes: cfg.max_file_bytes as u64,
            max_cache_value_bytes: cfg.max_cache_value_bytes,
            max_bus_payload_bytes: cfg.max_bus_payload_bytes,
            bus_retention: cfg.bus_retention,
            ..Limits::default()
        },
    )
    .with_jobs(
        Some(std::sync::Arc::new(TokioSpawner)),
        Some(std::sync::Arc::new(HostImporter::new(
            cfg.import_roots.clone(),
        ))),
    )
    .with_secrets(std::sync::Arc::new(sealer)))
}

/// Reads the auth mode; static mode loads and validates the tokens file.
pub fn auth_mode(cfg: &ServerConfig) -> Result<AuthMode> {
    match cfg.auth.as_str() {
        "dev" => Ok(AuthMode::Dev),
        "static" => {
            let Some(path) = &cfg.tokens_file else {
                bail!("auth = static needs tokens_file (--tokens-file)")
            };
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read tokens file {}", path.display()))?;
            let table = TokenTable::parse_toml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
            if table.is_empty() {
                bail!("{}: no tokens defined", path.display());
            }
            Ok(AuthMode::Static(table))
        }
        other => bail!("auth {other:?} is not supported; expected one of dev, static"),
    }
}

/// The HTTP application for `cfg` (routes, auth, limits); `draining` ends its streams;
/// `gauges` are the deployment figures `/metrics` shows (kept fresh by [`start`]).
pub fn app(
    service: EmbeddedService,
    cfg: &ServerConfig,
    draining: Draining,
    gauges: Arc<Mutex<DeploymentGauges>>,
) -> Result<axum::Router> {
    let http = HttpConfig {
        draining,
        auth: auth_mode(cfg)?,
        limits: HttpLimits {
            max_json_bytes: cfg.max_json_bytes,
            max_file_bytes: cfg.max_file_bytes,
            tenant_requests_per_sec: cfg.tenant_requests_per_sec,
            tenant_burst: cfg.tenant_burst,
            request_timeout: Duration::from_secs(cfg.request_timeout_secs),
        },
    };
    let metrics = if cfg.otlp.metrics {
        aether_telemetry::Metrics::exporting("afs-server").map_err(anyhow::Error::msg)?
    } else {
        aether_telemetry::Metrics::new()
    };
    let requests = RequestMetrics::new(&metrics);
    watch_gauges(&metrics, gauges);
    let scrape = metrics.clone();
    Ok(aether_http_server::router(service, http)
        .layer(axum::middleware::from_fn(move |req, next| {
            let requests = requests.clone();
            async move { requests.observe(req, next).await }
        }))
        .layer(axum::middleware::from_fn(traced))
        .route(
            "/metrics",
            axum::routing::get(move || {
                let text = scrape.prometheus();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        text,
                    )
                }
            }),
        ))
}

/// The request's route template, never its concrete path: ids and file names stay out of
/// labels and span names.
fn route_template(req: &axum::extract::Request) -> String {
    req.extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned())
}

/// Runs the request in a span named by its route template, continuing the caller's trace
/// (W3C `traceparent`), so a mount's operation, this request and its store work form one trace.
async fn traced(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let route = route_template(&req);
    let span = tracing::info_span!(
        "http.server",
        otel.name = %format!("{} {route}", req.method()),
        otel.kind = "server",
        http.request.method = %req.method(),
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    if let Some(parent) = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        aether_telemetry::continue_trace(&span, parent);
    }
    let resp = next.run(req).instrument(span.clone()).await;
    span.record("http.response.status_code", resp.status().as_u16());
    resp
}

/// Sessions by status and the content store's size, read from the last refresh.
fn watch_gauges(metrics: &aether_telemetry::Metrics, gauges: Arc<Mutex<DeploymentGauges>>) {
    use opentelemetry::metrics::MeterProvider;
    let meter = metrics.provider().meter("afs-server");
    let read = move || gauges.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let r = read.clone();
    let _ = meter
        .u64_observable_gauge("afs_server_sessions")
        .with_description("Sessions of every tenant, by status")
        .with_callback(move |o| {
            for (status, n) in r().sessions {
                o.observe(
                    n,
                    &[opentelemetry::KeyValue::new("status", status.as_str())],
                );
            }
        })
        .build();
    let r = read.clone();
    let _ = meter
        .u64_observable_gauge("afs_server_cas_blobs")
        .with_description("Blobs in the content-addressed store")
        .with_callback(move |o| o.observe(r().blob_count, &[]))
        .build();
    let _ = meter
        .u64_observable_gauge("afs_server_cas_bytes")
        .with_description("Bytes in the content-addressed store")
        .with_callback(move |o| o.observe(read().blob_bytes, &[]))
        .build();
}

/// How often the deployment gauges are recomputed (a blob count walks the blob directory).
const GAUGES_EVERY: Duration = Duration::from_secs(15);

/// Request counts and latencies by route template, method and status.
#[derive(Clone)]
struct RequestMetrics {
    count: opentelemetry::metrics::Counter<u64>,
    duration: opentelemetry::metrics::Histogram<f64>,
}

impl RequestMetrics {
    fn new(metrics: &aether_telemetry::Metrics) -> Self {
        use opentelemetry::metrics::MeterProvider;
        let meter = metrics.provider().meter("afs-server");
        RequestMetrics {
            count: meter
                .u64_counter("afs_server_requests_total")
                .with_description("HTTP requests answered, by route, method and status")
                .build(),
            duration: meter
                .f64_histogram("afs_server_request_duration_seconds")
                .with_description("Time to a response's head, by route, method and status")
                .with_boundaries(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .build(),
        }
    }

    async fn observe(
        &self,
        req: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        let route = route_template(&req);
        let method = req.method().to_string();
        let start = std::time::Instant::now();
        let resp = next.run(req).await;
        let attrs = [
            opentelemetry::KeyValue::new("route", route),
            opentelemetry::KeyValue::new("method", method),
            opentelemetry::KeyValue::new("status", i64::from(resp.status().as_u16())),
        ];
        self.count.add(1, &attrs);
        self.duration.record(start.elapsed().as_secs_f64(), &attrs);
        resp
    }
}

/// The line `afs-server` prints on stdout once it listens; scripts and tests take the address
/// (useful with `--listen 127.0.0.1:0`) from it with [`parse_listening_line`].
pub fn listening_line(addr: SocketAddr) -> String {
    format!("{LISTENING}{addr}")
}

pub fn parse_listening_line(line: &str) -> Option<&str> {
    line.trim().strip_prefix(LISTENING)
}

const LISTENING: &str = "afs-server listening on http://";

/// A running server: its address and a handle to stop it.
pub struct RunningServer {
    pub addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    draining: Draining,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    background: Vec<tokio::task::JoinHandle<()>>,
    service: EmbeddedService,
}

impl RunningServer {
    /// Stops accepting, ends event streams, drains in-flight requests for up to `grace`, then
    /// drops what is left. Returns once the stores are closed, so another server (a restart in
    /// the same process) may open the same data directory at once.
    pub async fn stop(self, grace: Duration) {
        self.draining.start();
        let _ = self.shutdown.send(true);
        let mut task = self.task;
        if tokio::time::timeout(grace, &mut task).await.is_err() {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "requests still running after the grace period; cutting them off"
            );
            task.abort();
            let _ = task.await;
        }
        for t in self.background {
            let _ = t.await;
        }
        // Connection tasks hold handles of the service until their last response is written;
        // the stores close when the last handle goes.
        let closing = async {
            while !self.service.is_last_handle() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        if tokio::time::timeout(grace, closing).await.is_err() {
            // An import job still runs; the store lock keeps a second server off the data
            // directory until it ends.
            tracing::warn!("background jobs still hold the stores after the grace period");
        }
    }
}

/// How often read counters are written to the store.
const USAGE_FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Binds `cfg.listen` and serves until [`RunningServer::stop`]; collects garbage periodically.
pub async fn start(cfg: &ServerConfig) -> Result<RunningServer> {
    let service = build_service(cfg)?;
    let draining = Draining::default();
    let gauges = Arc::new(Mutex::new(DeploymentGauges::default()));
    let router = app(service.clone(), cfg, draining.clone(), gauges.clone())?;
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("bind {}", cfg.listen))?;
    let addr = listener.local_addr().context("read the bound address")?;
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let mut background = Vec::new();
    {
        // Read counters reach the store every few seconds and once more at shutdown.
        let service = service.clone();
        let mut stop = tx.subscribe();
        background.push(tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    _ = tokio::time::sleep(USAGE_FLUSH_EVERY) => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                if let Err(e) = service.flush_usage().await {
                    tracing::warn!(error = %e, "recording bytes read failed; will retry");
                }
                if stopping {
                    return;
                }
            }
        }));
    }
    {
        let service = service.clone();
        let mut stop = tx.subscribe();
        background.push(tokio::spawn(async move {
            loop {
                match service.gauges().await {
                    Ok(g) => *gauges.lock().unwrap_or_else(|p| p.into_inner()) = g,
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshing the gauges failed; will retry")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(GAUGES_EVERY) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }));
    }
    if cfg.gc_interval_secs > 0 {
        let service = service.clone();
        let (interval, grace) = (
            Duration::from_secs(cfg.gc_interval_secs),
            Duration::from_secs(cfg.gc_grace_secs),
        );
        let mut stop = tx.subscribe();
        background.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                match service.collect_garbage(grace).await {
                    Ok(r) => tracing::info!(
                        examined = r.examined,
                        removed = r.removed,
                        "blob garbage collection"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "blob garbage collection failed; will retry")
                    }
                }
            }
        }));
    }
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    Ok(RunningServer {
        addr,
        shutdown: tx,
        draining,
        task,
        background,
        service,
    })
}
