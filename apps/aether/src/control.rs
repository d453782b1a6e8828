//! The control socket (SPEC 5): newline-delimited JSON requests `{"verb":"STATUS"}` and
//! responses `{"ok":true,...}` over a Unix socket (parent 0700, socket 0600). A stale socket is
//! replaced; a live one means the session is already mounted.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aether_ports::local_cache::LocalCache;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::config::AetherConfig;
use crate::runtime::MountEngine;

/// What `STATUS` reports besides the engine's figures.
#[derive(Clone)]
pub(crate) struct RuntimeInfo {
    pub session_id: String,
    pub mount_dir: PathBuf,
    pub endpoint: String,
    pub started: Instant,
    pub config: AetherConfig,
}

/// Makes `path` ours: refuses a live socket, removes a stale one, prepares the directory.
pub(crate) fn claim_socket(path: &Path, session: &str) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            bail!(
                "{} exists and is not a socket; refusing to replace it (remove it or choose another --control-socket)",
                path.display()
            );
        }
        if UnixStream::connect(path).is_ok() {
            bail!(
                "session {session} is already mounted (its control socket {} answers); run `aether stop --session-id {session}` first",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("remove the stale control socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        aether_cache_sqlite::ensure_private_dir(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Serves the control socket until `stop` flips.
pub(crate) fn serve(
    path: &Path,
    engine: Arc<MountEngine>,
    info: RuntimeInfo,
    stop_requested: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("listen on the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restrict {}", path.display()))?;
    Ok(tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                c = listener.accept() => c,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Ok((stream, _)) = conn else { continue };
            let (engine, info, stop_requested) =
                (engine.clone(), info.clone(), stop_requested.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let reply = match capture_request(&line) {
                        Some(req) => capture(req).await,
                        None => answer(&line, &engine, &info, &stop_requested),
                    };
                    let mut text = reply.to_string();
                    text.push('\n');
                    if write.write_all(text.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    }))
}

/// A `TRACE CAPTURE` request: how long to record and where to write.
struct CaptureRequest {
    seconds: u64,
    output: PathBuf,
}

/// The capture request in `line`, if that is what it is (it alone takes time to answer).
fn capture_request(line: &str) -> Option<Result<CaptureRequest, String>> {
    let v = serde_json::from_str::<Value>(line).ok()?;
    let verb = v.get("verb")?.as_str()?;
    if !verb.eq_ignore_ascii_case("TRACE CAPTURE") {
        return None;
    }
    let seconds = match v.get("seconds") {
        None => 5,
        Some(s) => match s.as_u64() {
            Some(n @ 1..=300) => n,
            _ => {
                return Some(Err(format!(
                    "seconds must be a whole number from 1 to 300, not {s}"
                )));
            }
        },
    };
    let output = match v.get("output").and_then(Value::as_str) {
        Some(p) if Path::new(p).is_absolute() => PathBuf::from(p),
        Some(p) => return Some(Err(format!("output {p:?} must be an absolute path"))),
        None => return Some(Err("output (an absolute file path) is required".into())),
    };
    Some(Ok(CaptureRequest { seconds, output }))
}

/// Records the runtime's spans for the window asked and writes them as JSON lines.
async fn capture(req: Result<CaptureRequest, String>) -> Value {
    let req = match req {
        Ok(r) => r,
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let Some(capture) = crate::logging::capture() else {
        return json!({"ok": false, "error": "this runtime has no span capture (logging did not start)"});
    };
    capture.arm();
    tokio::time::sleep(Duration::from_secs(req.seconds)).await;
    let captured = capture.take();
    let write = || -> std::io::Result<()> {
        if let Some(dir) = req.output.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut out = std::io::BufWriter::new(std::fs::File::create(&req.output)?);
        for span in &captured.spans {
            serde_json::to_writer(&mut out, span)?;
            out.write_all(b"\n")?;
        }
        out.flush()
    };
    match write() {
        Ok(()) => json!({"ok": true, "output": req.output, "spans": captured.spans.len(),
                         "dropped": captured.dropped, "seconds": req.seconds}),
        Err(e) => json!({"ok": false, "error": format!("write {}: {e}", req.output.display())}),
    }
}

fn answer(
    line: &str,
    engine: &MountEngine,
    info: &RuntimeInfo,
    stop_requested: &tokio::sync::Notify,
) -> Value {
    let verb = match serde_json::from_str::<Value>(line) {
        Ok(v) => v
            .get("verb")
            .and_then(Value::as_str)
            .map(str::to_ascii_uppercase),
        Err(e) => return json!({"ok": false, "error": format!("the request is not JSON: {e}")}),
    };
    match verb.as_deref() {
        Some("STATUS") => status(engine, info),
        Some("STOP") => {
            stop_requested.notify_one();
            json!({"ok": true, "stopping": true})
        }
        Some("CACHE INSPECT") => {
            let s = engine.cache().stats();
            let j = engine.cache().journal_stats();
            json!({"ok": true, "blobs": s.blob_count, "blob_bytes": s.blob_bytes,
                   "dirty_bytes": s.staging_bytes + j.pending_bytes, "shared_links": s.shared_links,
                   "pending_entries": j.pending_entries})
        }
        Some("CACHE CLEAR") => match engine.cache().clear_clean() {
            Ok(freed) => json!({"ok": true, "freed_bytes": freed}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
        Some("DEBUG HANDLES") => {
            let handles: Vec<Value> = engine
                .handles()
                .into_iter()
                .map(|(fh, ino, path, write)| json!({"fh": fh, "ino": ino, "path": path, "write": write}))
                .collect();
            json!({"ok": true, "handles": handles})
        }
        Some("DEBUG SESSIONS") => {
            let st = engine.status();
            json!({"ok": true, "sessions": [{"session_id": info.session_id, "inodes": st.inodes,
                   "open_handles": st.open_handles, "written_back": st.written_back, "rejected": st.rejected}]})
        }
        Some("JOURNAL THROTTLE") => {
            json!({"ok": true, "backpressure": backpressure(engine, &info.config)})
        }
        Some(other) => {
            json!({"ok": false, "error": format!("unknown verb {other:?}; expected one of STATUS, STOP, CACHE INSPECT, CACHE CLEAR, DEBUG HANDLES, DEBUG SESSIONS, JOURNAL THROTTLE, TRACE CAPTURE")})
        }
        None => json!({"ok": false, "error": "the request has no \"verb\""}),
    }
}

/// The journal's state against the SPEC's thresholds, and the gate writers pass.
fn backpressure(engine: &MountEngine, cfg: &AetherConfig) -> Value {
    let j = engine.cache().journal_stats();
    let bp = &cfg.backpressure;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    let age = j
        .oldest_appended_at
        .map(|t| ((now - t.nanos()).max(0) as u64) / 1_000_000_000)
        .unwrap_or(0);
    let state = match engine.gate() {
        aether_domain::backpressure::Gate::Open => "normal".to_owned(),
        aether_domain::backpressure::Gate::Held(p) => format!("holding writers ({})", p.as_str()),
    };
    json!({
        "state": state,
        "pending_entries": j.pending_entries,
        "pending_bytes": j.pending_bytes,
        "oldest_age_seconds": age,
        "thresholds": {
            "journal_high_water_bytes": bp.journal_high_water_bytes,
            "journal_low_water_bytes": bp.journal_low_water_bytes,
            "journal_high_water_entries": bp.journal_high_water_entries,
            "journal_low_water_entries": bp.journal_low_water_entries,
            "journal_max_age_seconds": bp.journal_max_age_seconds,
            "journal_clear_age_seconds": bp.journal_clear_age_seconds,
        }
    })
}

fn status(engine: &MountEngine, info: &RuntimeInfo) -> Value {
    let st = engine.status();
    let lookups = st.cache_hits + st.cache_misses;
    let bp = backpressure(engine, &info.config);
    json!({
        "ok": true,
        "session_id": info.session_id,
        "mount_dir": info.mount_dir,
        "endpoint": info.endpoint,
        "uptime_seconds": info.started.elapsed().as_secs(),
        "ops": st.ops,
        "cache_hit_ratio": if lookups == 0 { 0.0 } else { st.cache_hits as f64 / lookups as f64 },
        "journal": {
            "pending_entries": bp["pending_entries"],
            "pending_bytes": bp["pending_bytes"],
            "oldest_age_seconds": bp["oldest_age_seconds"],
            "written_back": st.written_back,
            "rejected": st.rejected,
        },
        "backpressure": bp["state"],
        "last_server_contact_seconds_ago": st.last_contact_ago.map(|d| d.as_secs()),
        "remote_errors": st.remote_errors,
        "invalidations": st.invalidations,
        "ttls": {
            "lookup_ttl_secs": info.config.lookup_ttl_secs,
            "negative_lookup_ttl_secs": info.config.negative_lookup_ttl_secs,
            "dir_cache_ttl_secs": info.config.dir_cache_ttl_secs,
        },
    })
}

/// Sends one request to a runtime and returns its reply.
pub(crate) fn request(path: &Path, verb: &str, session: &str) -> Result<Value> {
    request_with(
        path,
        json!({"verb": verb}),
        session,
        Duration::from_secs(120),
    )
}

/// Sends `body` (a JSON object with `verb` and its arguments) and waits up to `wait` for the
/// reply.
pub(crate) fn request_with(
    path: &Path,
    body: Value,
    session: &str,
    wait: Duration,
) -> Result<Value> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        anyhow::anyhow!(
            "session {session} is not mounted here (no runtime answers on {}: {e})",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(wait))?;
    let mut line = body.to_string();
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .read_line(&mut reply)
        .with_context(|| {
            format!(
                "no reply from {} within {} s; is it an aether runtime's control socket?",
                path.display(),
                wait.as_secs()
            )
        })?;
    serde_json::from_str(&reply).with_context(|| {
        format!(
            "{} answered something that is not an aether runtime's reply",
            path.display()
        )
    })
}
