//! Telemetry (adapter layer) for both apps: `tracing` to JSON lines or text on stderr, stdout
//! or a rotating file, with sensitive fields hashed, chatty debug targets sampled, `RUST_LOG`
//! taking precedence over the configured level, and the level reloadable (SIGHUP); spans and
//! metrics exported over OTLP when the standard environment asks for it.

mod capture;
mod layer;
mod metrics;
mod otlp;
mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing_subscriber::prelude::*;
use tracing_subscriber::{EnvFilter, Registry, reload};

pub use capture::{Captured, SpanCapture};
pub use layer::{Format, Redaction, SENSITIVE, Sample};
pub use metrics::{Metrics, serve as serve_metrics};
pub use otlp::{continue_trace, current_traceparent, export_wanted};
pub use writer::{RotatingFile, Rotation, Sink};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Stderr,
    Stdout,
    File {
        path: PathBuf,
        rotation: Rotation,
        max_files: usize,
    },
}

/// Everything that decides what is logged and where.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// A filter such as `info` or `aether_mount=debug,info`; `RUST_LOG` wins when valid.
    pub level: String,
    pub format: Format,
    pub destination: Destination,
    pub redaction: Redaction,
    /// `aether` or `afs-server`, on every line.
    pub component: String,
    pub session_id: Option<String>,
    pub sampling: Vec<Sample>,
    /// Export spans over OTLP (as `component`), see [`export_wanted`].
    pub export_traces: bool,
}

/// Changes the running level (SIGHUP); flushes exported spans when dropped.
pub struct LogHandle {
    filter: reload::Handle<EnvFilter, Registry>,
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    capture: SpanCapture,
}

impl Drop for LogHandle {
    fn drop(&mut self) {
        if let Some(p) = self.traces.take() {
            // Spans still batched would be lost at exit otherwise.
            let _ = p.shutdown();
        }
    }
}

impl LogHandle {
    /// Records the spans that close while armed (`aether trace capture`).
    pub fn capture(&self) -> &SpanCapture {
        &self.capture
    }

    /// Sends the spans batched so far (before a process that exported them exits or is
    /// asked for them).
    pub fn flush_traces(&self) {
        if let Some(p) = &self.traces {
            let _ = p.force_flush();
        }
    }

    /// Applies `level` unless `RUST_LOG` wins; whether it applied. A malformed level is an
    /// error naming it.
    pub fn set_level(&self, level: &str) -> Result<bool, String> {
        if rust_log_wins() {
            return Ok(false);
        }
        let filter = EnvFilter::try_new(level)
            .map_err(|e| format!("log level {level:?} is not a valid filter: {e}"))?;
        self.filter
            .modify(|f| *f = filter)
            .map(|()| true)
            .map_err(|e| format!("cannot change the log level: {e}"))
    }
}

/// Whether `RUST_LOG` holds a valid filter (it then decides the level).
pub fn rust_log_wins() -> bool {
    std::env::var("RUST_LOG").is_ok() && EnvFilter::try_from_default_env().is_ok()
}

/// What `init` could not do as asked, with what it did instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback(pub String);

/// The line sink for `destination`; an unusable file falls back to stderr, saying why.
pub fn sink(destination: &Destination) -> (Sink, Option<Fallback>) {
    match destination {
        Destination::Stderr => (Sink::Stderr, None),
        Destination::Stdout => (Sink::Stdout, None),
        Destination::File {
            path,
            rotation,
            max_files,
        } => match RotatingFile::open(path, *rotation, *max_files) {
            Ok(f) => (Sink::File(Arc::new(Mutex::new(f))), None),
            Err(e) => (
                Sink::Stderr,
                Some(Fallback(format!("{e}; logging to stderr instead"))),
            ),
        },
    }
}

/// Installs the process-wide subscriber. Returns the handle for level changes and, when the
/// log file could not be used, the fallback taken (the caller reports it).
pub fn init(settings: &LogSettings) -> Result<(LogHandle, Option<Fallback>), String> {
    let filter = if rust_log_wins() {
        EnvFilter::from_default_env()
    } else {
        EnvFilter::try_new(&settings.level)
            .map_err(|e| format!("log level {:?} is not a valid filter: {e}", settings.level))?
    };
    let (filter, handle) = reload::Layer::new(filter);
    let (sink, fallback) = sink(&settings.destination);
    let layer = layer::LogLayer {
        format: settings.format,
        sink,
        redaction: settings.redaction.clone(),
        component: settings.component.clone(),
        session_id: settings.session_id.clone(),
        sampling: settings.sampling.clone(),
        seen: Mutex::new(HashMap::new()),
    };
    let traces = settings
        .export_traces
        .then(|| otlp::tracer_provider(&settings.component))
        .transpose()?;
    let spans = traces.as_ref().map(|p| otlp::layer(p, &settings.component));
    let capture = SpanCapture::default();
    tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .with(spans)
        .with(capture.layer(settings.redaction.clone()))
        .try_init()
        .map_err(|e| format!("logging was already set up: {e}"))?;
    Ok((
        LogHandle {
            filter: handle,
            traces,
            capture,
        },
        fallback,
    ))
}

/// The layer alone (for tests and for composing with other layers).
pub fn layer_for(
    settings: &LogSettings,
) -> (impl tracing_subscriber::Layer<Registry>, Option<Fallback>) {
    let (sink, fallback) = sink(&settings.destination);
    (
        layer::LogLayer {
            format: settings.format,
            sink,
            redaction: settings.redaction.clone(),
            component: settings.component.clone(),
            session_id: settings.session_id.clone(),
            sampling: settings.sampling.clone(),
            seen: Mutex::new(HashMap::new()),
        },
        fallback,
    )
}
