//! The mount runtime: composes the HTTP client, the disk cache, the engine and the FUSE bridge
//! for one session, runs the write-back, changefeed and journal-sync loops and the control
//! socket, and shuts down cleanly (flush, unmount) when asked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aether_cache_sqlite::{DiskCache, SharedStore, SyncPolicy};
use aether_domain::mount_options::{MountFlag, MountOptions};
use aether_domain::{Principal, TenantId};
use aether_http_client::{ClientConfig, HttpClient, TokenSource};
use aether_mount::{Backoff, Engine, MountConfig};
use aether_ports::local_cache::{LocalCache, MountClock};
use aether_ports::vfs::FsError;
use anyhow::{Context, Result, bail};

use crate::config::AetherConfig;
use crate::control;

/// Files written in order from empty upload while they are written once this large, so that
/// `fsync` and `close` of a large file wait for its last bytes only (docs/mount.md).
const EARLY_UPLOAD_ABOVE: u64 = 8 << 20;
/// How long an idle write-back waits for a burst of changes to gather into one batch.
const WRITEBACK_LINGER: std::time::Duration = std::time::Duration::from_millis(50);
/// How often the cache's size is checked against `cache_max_bytes`, in tenths of a second
/// (a check walks the cache only after enough traffic).
const CACHE_TRIM_EVERY_TICKS: u32 = 100;

/// The wall and monotonic clock of this process.
pub(crate) struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub(crate) fn new() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl MountClock for SystemClock {
    fn now(&self) -> aether_domain::Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        aether_domain::Timestamp::from_nanos(d.as_nanos() as i64)
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await
    }
}

pub(crate) type MountEngine = Engine<HttpClient, DiskCache, SystemClock>;

/// Everything one mount needs, resolved from configuration and flags.
pub(crate) struct MountPlan {
    pub session_id: String,
    pub mount_dir: PathBuf,
    pub endpoint: String,
    pub token: String,
    pub cache_dir: PathBuf,
    pub shared_root: Option<PathBuf>,
    pub control_socket: PathBuf,
    pub worker_id: String,
    pub config: AetherConfig,
    pub read_only: bool,
    pub allow_other: bool,
    pub writeback_cache: bool,
}

/// A running mount, for `dev` and the foreground command.
pub(crate) struct Running {
    pub engine: Arc<MountEngine>,
    mounted: Option<aether_fuse::Mounted>,
    stop_loops: tokio::sync::watch::Sender<bool>,
    pub stop_requested: Arc<tokio::sync::Notify>,
    plan_dir: PathBuf,
    socket: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The configuration in force and the live journal sync interval (for SIGHUP reloads).
    config: AetherConfig,
    sync_interval_ms: Arc<AtomicU64>,
    /// Kept for the metrics endpoint's lifetime (its instruments read the engine).
    _metrics: aether_telemetry::Metrics,
}

/// The worker id: configured, else a UUID kept in `<cache_dir>/worker-id`.
pub(crate) fn worker_id(cfg: &AetherConfig, cache_dir: &Path) -> Result<String> {
    if let Some(id) = &cfg.bridge.worker_id {
        return Ok(id.clone());
    }
    let file = cache_dir.join("worker-id");
    if let Ok(text) = std::fs::read_to_string(&file)
        && uuid::Uuid::parse_str(text.trim()).is_ok()
    {
        return Ok(text.trim().to_owned());
    }
    aether_cache_sqlite::ensure_private_dir(cache_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(&file, &id).with_context(|| format!("write {}", file.display()))?;
    Ok(id)
}

/// Whether `dir` is a mount point right now (from /proc/self/mountinfo).
pub(crate) fn is_mount_point(dir: &Path) -> bool {
    // The parent is resolved, not `dir`: resolving a dead mount's root fails (ENOTCONN).
    let canon = match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            parent.canonicalize().map(|p| p.join(name))
        }
        _ => dir.canonicalize(),
    };
    let Ok(canon) = canon else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let target = canon.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
}

/// Lazily detaches a dead mount at `dir` ("Transport endpoint is not connected"), trying
/// again for a second while the kernel is still tearing the dead connection down; done too
/// if something else detached it meanwhile. Otherwise, says why not.
pub(crate) fn detach_dead_mount(dir: &Path) -> std::result::Result<(), String> {
    let mut why = String::from("it is still mounted");
    for attempt in 0..10 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        if !is_mount_point(dir) {
            return Ok(());
        }
        match std::process::Command::new("umount")
            .arg("-l")
            .arg(dir)
            .output()
        {
            Ok(out) if out.status.success() => return Ok(()),
            Ok(out) => why = String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            Err(e) => why = format!("cannot run umount: {e}"),
        }
    }
    if is_mount_point(dir) {
        Err(why)
    } else {
        Ok(())
    }
}

/// Checks the mount directory: created if missing; a file, a live mount or a foreign mount
/// are refused with a message saying so.
pub(crate) fn prepare_mount_dir(dir: &Path) -> Result<()> {
    // A dead FUSE mount may still answer `stat` from the attributes the kernel cached; `statfs`
    // always asks the file system, so it tells a dead mount from a live one.
    let inspected = std::fs::metadata(dir).and_then(|m| {
        if m.is_dir() && is_mount_point(dir) {
            rustix::fs::statfs(dir).map_err(std::io::Error::from)?;
        }
        Ok(m)
    });
    match inspected {
        Ok(m) if !m.is_dir() => bail!(
            "mount dir {} is not a directory; choose an empty directory",
            dir.display()
        ),
        Ok(_) if is_mount_point(dir) => bail!(
            "mount dir {} is already a mount point; unmount it or choose another directory",
            dir.display()
        ),
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc_enotconn()) => {
            // A runtime died here (kill -9): detach its dead mount and go on.
            tracing::warn!(dir = %dir.display(), "detaching a dead mount left by an earlier runtime");
            if let Err(why) = detach_dead_mount(dir) {
                bail!(
                    "mount dir {} holds a dead mount that could not be detached ({why}); run `umount -l {}`",
                    dir.display(),
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .with_context(|| format!("create the mount dir {}", dir.display())),
        Err(e) => Err(e).with_context(|| format!("inspect the mount dir {}", dir.display())),
    }
}

const fn libc_enotconn() -> i32 {
    107
}

fn describe_start_error(e: FsError, plan: &MountPlan) -> anyhow::Error {
    match e {
        FsError::NotFound(_) => anyhow::anyhow!(
            "session {} does not exist at {} (or belongs to another tenant)",
            plan.session_id,
            plan.endpoint
        ),
        FsError::PermissionDenied(m) => anyhow::anyhow!(
            "the server at {} refused the token: {m}; check AFS_AUTH_TOKEN or --auth-token-file",
            plan.endpoint
        ),
        FsError::TimedOut(m) => anyhow::anyhow!(
            "cannot reach the server at {}: {m}; is it running and is [bridge].server_endpoint right?",
            plan.endpoint
        ),
        other => anyhow::anyhow!("cannot start the mount of {}: {other}", plan.session_id),
    }
}

/// Mounts `plan` and starts its loops. Call inside the tokio runtime.
pub(crate) async fn start(plan: MountPlan) -> Result<Running> {
    aether_domain::SessionId::parse(&plan.session_id)
        .map_err(|e| anyhow::anyhow!("--session-id {:?}: {}", plan.session_id, e.message))?;
    prepare_mount_dir(&plan.mount_dir)?;
    control::claim_socket(&plan.control_socket, &plan.session_id)?;
    let cfg = &plan.config;
    let policy = sync_policy(&cfg.journal_sync_policy);
    let shared = match &plan.shared_root {
        Some(root) => match SharedStore::open(root) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "the shared cache store is unavailable; continuing without it");
                None
            }
        },
        None => None,
    };
    let cache = DiskCache::open(&plan.cache_dir, &plan.session_id, policy, shared)
        .map_err(|e| anyhow::anyhow!("open the cache in {}: {e}", plan.cache_dir.display()))?;
    cache.set_sync_backlog(cfg.journal_sync_backlog_bytes);
    let mut client_cfg = ClientConfig::new(&plan.endpoint, TokenSource::Fixed(plan.token.clone()));
    client_cfg.connect_timeout = Duration::from_millis(cfg.transport.idle_timeout_ms.max(1000));
    client_cfg.traceparent = Some(aether_telemetry::current_traceparent);
    let metrics = crate::metrics::new();
    client_cfg.observe = Some(metrics.request_observer());
    let client = HttpClient::new(client_cfg).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let b = &cfg.bridge.reconnect_backoff;
    let options = MountOptions::parse(cfg.mount_options.iter().map(String::as_str));
    for warning in &options.warnings {
        tracing::warn!(%warning, "mount option ignored");
    }
    let read_only = plan.read_only || options.is_set(MountFlag::ReadOnly);
    let engine = Arc::new(Engine::new(
        client,
        cache,
        SystemClock::new(),
        MountConfig {
            session_id: plan.session_id.clone(),
            principal: Principal::full_access(
                TenantId::parse("00000000-0000-0000-0000-000000000000").expect("a valid UUID"),
                "aether",
            ),
            worker_id: plan.worker_id.clone(),
            lookup_ttl: Duration::from_secs(cfg.lookup_ttl_secs),
            negative_ttl: Duration::from_secs(cfg.negative_lookup_ttl_secs),
            dir_ttl: Duration::from_secs(cfg.dir_cache_ttl_secs),
            read_only,
            backoff: Backoff {
                start: Duration::from_millis(b.start_ms),
                max: Duration::from_millis(b.max_ms),
                multiplier: b.multiplier,
                jitter_percent: b.jitter_percent,
            },
            backpressure: thresholds(&cfg.backpressure),
            backpressure_wait: Duration::from_secs(60),
            early_upload_above: Some(EARLY_UPLOAD_ABOVE),
            writeback_linger: Some(WRITEBACK_LINGER),
            cache_max_bytes: (cfg.cache_max_bytes > 0).then_some(cfg.cache_max_bytes),
        },
    ));
    engine
        .start()
        .await
        .map_err(|e| describe_start_error(e, &plan))?;
    let fuse_observer = metrics.fuse_observer();
    let metrics = metrics.watch(&engine, &cfg.metrics_addr);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = Vec::new();
    {
        let e = engine.clone();
        let rx = stop_rx.clone();
        tasks.push(tokio::spawn(
            async move { e.run_writeback(stopped(rx)).await },
        ));
    }
    {
        let e = engine.clone();
        let rx = stop_rx.clone();
        tasks.push(tokio::spawn(
            async move { e.run_changefeed(stopped(rx)).await },
        ));
    }
    {
        let e = engine.clone();
        let rx = stop_rx.clone();
        tasks.push(tokio::spawn(
            async move { e.run_transfers(stopped(rx)).await },
        ));
    }
    // Keeping the cache under `cache_max_bytes`: measuring it walks its files, so this too runs
    // on a thread of its own.
    {
        let e = engine.clone();
        let rx = stop_rx.clone();
        let trimmer = std::thread::Builder::new()
            .name("aether-cache-trim".to_owned())
            .spawn(move || {
                while !*rx.borrow() {
                    e.trim_cache();
                    for _ in 0..CACHE_TRIM_EVERY_TICKS {
                        if *rx.borrow() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
        if let Err(err) = trimmer {
            tracing::warn!(error = %err, "could not start the cache trimmer; the cache is bounded only by its disk");
        }
    }
    // The `interval` policy's timer; the policy and interval may change live (SIGHUP). It runs
    // on a thread of its own: an fdatasync on a runtime worker would stall every task queued
    // behind it on that worker, FUSE replies among them.
    let sync_interval_ms = Arc::new(AtomicU64::new(cfg.journal_sync_interval_ms));
    {
        let e = engine.clone();
        let every = sync_interval_ms.clone();
        let rx = stop_rx.clone();
        let syncer = std::thread::Builder::new()
            .name("aether-journal-sync".to_owned())
            .spawn(move || {
                let mut last = Instant::now();
                while !*rx.borrow() {
                    let wait = Duration::from_millis(every.load(Ordering::Relaxed).max(1));
                    // Short naps, so a stop is noticed quickly whatever the interval.
                    std::thread::sleep(wait.min(Duration::from_millis(50)));
                    if last.elapsed() < wait || e.cache().sync_policy() != SyncPolicy::Interval {
                        continue;
                    }
                    last = Instant::now();
                    if let Err(err) = e.cache().journal_sync_on_timer() {
                        tracing::warn!(error = %err, "journal sync failed");
                    }
                }
            })
            .context("start the journal sync thread")?;
        tasks.push(tokio::task::spawn_blocking(move || {
            let _ = syncer.join();
        }));
    }
    // Changes journaled by an earlier runtime (a crash) go to the server before the tree is
    // shown, so the mount never shows the server's older view of them.
    let pending = engine.cache().journal_stats().pending_entries;
    if pending > 0 {
        tracing::info!(
            pending,
            "writing back changes left by the previous runtime before mounting"
        );
        let left = engine.flush_all(Duration::from_secs(60)).await;
        if left > 0 {
            tracing::warn!(
                left,
                "some earlier changes are not on the server yet; they stay queued"
            );
        }
    }
    let spec = aether_fuse::MountSpec {
        allow_other: plan.allow_other || options.is_set(MountFlag::AllowOther),
        writeback_cache: plan.writeback_cache || options.is_set(MountFlag::WritebackCache),
        read_only,
        default_permissions: true,
        negative_ttl: Duration::from_secs(cfg.negative_lookup_ttl_secs),
        // One FUSE worker per core: more only contend for the device's queue (measured: 2
        // workers on 2 cores answer `ls -lR` 30 % faster than 4).
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, 8),
        observe: Some(fuse_observer),
        ..Default::default()
    };
    let dir = plan.mount_dir.clone();
    let (mounted, notifier) = {
        let e = engine.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || aether_fuse::mount(e, handle, &dir, &spec))
            .await
            .context("mount task")?
            .with_context(|| format!("mount FUSE at {}", plan.mount_dir.display()))?
    };
    engine.attach_kernel(notifier);
    // Host settings, not ours to change: say once that they exist.
    let wake_here = aether_fuse::kernel_wake_here();
    if wake_here == Some(false) {
        tracing::info!(
            "this kernel's fuse.wake_here switch is off; turning it on (as root: echo Y > \
             /sys/module/fuse/parameters/wake_here) makes small-file work through FUSE mounts \
             faster (docs/mount.md, \"Host tuning\")"
        );
    }
    if wake_here != Some(true) && aether_fuse::vcpus_halt_at_once() {
        tracing::info!(
            "this virtual machine's idle vCPUs halt at once (haltpoll, guest_halt_poll_ns=0); \
             letting them poll (as root: echo 200000 > \
             /sys/module/haltpoll/parameters/guest_halt_poll_ns) makes small-file work through \
             FUSE mounts faster (docs/mount.md, \"Host tuning\")"
        );
    }
    let stop_requested = Arc::new(tokio::sync::Notify::new());
    let info = control::RuntimeInfo {
        session_id: plan.session_id.clone(),
        mount_dir: plan
            .mount_dir
            .canonicalize()
            .unwrap_or(plan.mount_dir.clone()),
        endpoint: plan.endpoint.clone(),
        started: Instant::now(),
        config: plan.config.clone(),
    };
    tasks.push(control::serve(
        &plan.control_socket,
        engine.clone(),
        info,
        stop_requested.clone(),
        stop_rx.clone(),
    )?);
    Ok(Running {
        engine,
        mounted: Some(mounted),
        stop_loops: stop_tx,
        stop_requested,
        plan_dir: plan.mount_dir,
        socket: plan.control_socket,
        tasks,
        config: plan.config,
        sync_interval_ms,
        _metrics: metrics,
    })
}

fn sync_policy(name: &str) -> SyncPolicy {
    match name {
        "immediate" => SyncPolicy::Immediate,
        "manual" => SyncPolicy::Manual,
        _ => SyncPolicy::Interval,
    }
}

impl Running {
    /// Applies a reloaded configuration (SIGHUP): the log level and the journal sync settings
    /// take effect now; any other change is reported as needing a restart.
    pub(crate) fn reload(&mut self, new: AetherConfig, set_log_level: &dyn Fn(&str) -> bool) {
        let old = std::mem::replace(&mut self.config, new.clone());
        if old.log_level != new.log_level {
            if set_log_level(&new.log_level) {
                tracing::info!(log_level = %new.log_level, "log level changed");
            } else {
                tracing::info!("log level unchanged: RUST_LOG is set and wins");
            }
        }
        if old.journal_sync_policy != new.journal_sync_policy {
            match self
                .engine
                .cache()
                .set_sync_policy(sync_policy(&new.journal_sync_policy))
            {
                Ok(()) => {
                    tracing::info!(policy = %new.journal_sync_policy, "journal sync policy changed")
                }
                Err(e) => tracing::warn!(error = %e, "cannot change the journal sync policy"),
            }
        }
        if old.journal_sync_interval_ms != new.journal_sync_interval_ms {
            self.sync_interval_ms
                .store(new.journal_sync_interval_ms, Ordering::Relaxed);
            tracing::info!(
                interval_ms = new.journal_sync_interval_ms,
                "journal sync interval changed"
            );
        }
        let live = [
            "log_level",
            "journal_sync_policy",
            "journal_sync_interval_ms",
        ];
        let (a, b) = (
            serde_json::to_value(&old).unwrap_or_default(),
            serde_json::to_value(&new).unwrap_or_default(),
        );
        if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
            for (key, value) in b {
                if !live.contains(&key.as_str()) && a.get(key) != Some(value) {
                    tracing::warn!(key = %key, "configuration changed; restart required for it to apply");
                }
            }
        }
    }

    /// Flushes pending writes (up to `timeout`), unmounts and stops the loops. Returns the
    /// number of journal entries still pending (kept for the next mount).
    pub(crate) async fn shutdown(mut self, timeout: Duration) -> u64 {
        self.engine.flush_all(timeout).await;
        if let Some(m) = self.mounted.take() {
            let dir = self.plan_dir.clone();
            let unmounted = tokio::task::spawn_blocking(move || m.unmount()).await;
            if !matches!(unmounted, Ok(Ok(())))
                && let Err(why) = detach_dead_mount(&dir)
            {
                tracing::warn!(dir = %dir.display(), error = %why, "unmount failed; the directory may still be busy");
            }
        }
        // Whatever closing files journaled during the unmount goes too; then the listings are
        // saved so that the next mount of an unchanged session reads no directory again.
        let left = self.engine.flush_all(timeout).await;
        let _ = self.engine.cache().journal_sync();
        if left > 0 {
            tracing::warn!(
                pending = left,
                "the server did not take every change in time; they stay in the journal for the next mount"
            );
        } else {
            match self.engine.save_index(Duration::from_secs(2)).await {
                Ok(n) => tracing::info!(
                    directories = n,
                    "saved the listing index for the next mount"
                ),
                Err(e) => tracing::warn!(error = %e, "could not save the listing index"),
            }
        }
        let _ = self.stop_loops.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let _ = std::fs::remove_file(&self.socket);
        crate::logging::flush_traces();
        left
    }
}

fn thresholds(b: &crate::config::Backpressure) -> aether_domain::backpressure::Thresholds {
    aether_domain::backpressure::Thresholds {
        journal_high_bytes: b.journal_high_water_bytes,
        journal_low_bytes: b.journal_low_water_bytes,
        journal_high_entries: b.journal_high_water_entries,
        journal_low_entries: b.journal_low_water_entries,
        journal_max_age: Duration::from_secs(b.journal_max_age_seconds),
        journal_clear_age: Duration::from_secs(b.journal_clear_age_seconds),
        dirty_high_bytes: b.cache_dirty_high_water_bytes,
        dirty_low_bytes: b.cache_dirty_low_water_bytes,
        disk_low_free_bytes: b.cache_disk_low_free_bytes,
        disk_high_free_bytes: b.cache_disk_high_free_bytes,
        disk_low_free_percent: b.cache_disk_low_free_percent,
    }
}

/// SIGINT and SIGTERM, caught from before the mount is announced: their default action ends
/// the process without a flush, so a signal sent the moment `aether mount` returns must
/// already find a handler.
pub(crate) struct StopSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    pub(crate) fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        StopSignals {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Waits for SIGINT, SIGTERM or a STOP over the control socket.
    pub(crate) async fn wait(&mut self, stop: &tokio::sync::Notify) {
        async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = next(&mut self.term) => {}
            _ = next(&mut self.int) => {}
            _ = stop.notified() => {}
        }
    }
}
