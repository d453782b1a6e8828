//! Span capture for `aether trace capture` (adapter layer): while armed, every span that closes
//! is kept as one JSON record (name, ids, start, duration, fields); disarmed it costs one
//! atomic load per span.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::layer::{Fields, Redaction};

/// Spans kept by one capture at most; later ones are counted as dropped.
const MAX_RECORDS: usize = 100_000;

#[derive(Default)]
struct Inner {
    armed: AtomicBool,
    records: Mutex<(Vec<Value>, u64)>,
}

/// A handle to arm the capture and take what it recorded.
#[derive(Clone, Default)]
pub struct SpanCapture(Arc<Inner>);

/// What one capture window recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    pub spans: Vec<Value>,
    /// Spans past the limit, not kept.
    pub dropped: u64,
}

impl SpanCapture {
    /// Starts recording (anything recorded before is discarded).
    pub fn arm(&self) {
        *self.0.records.lock().unwrap_or_else(|p| p.into_inner()) = (Vec::new(), 0);
        self.0.armed.store(true, Ordering::Release);
    }

    /// Stops recording and hands over the spans that closed since [`SpanCapture::arm`].
    pub fn take(&self) -> Captured {
        self.0.armed.store(false, Ordering::Release);
        let (spans, dropped) =
            std::mem::take(&mut *self.0.records.lock().unwrap_or_else(|p| p.into_inner()));
        Captured { spans, dropped }
    }

    pub(crate) fn layer(&self, redaction: Redaction) -> CaptureLayer {
        CaptureLayer(self.clone(), redaction)
    }
}

/// When a span began, kept in its extensions while a capture is armed.
struct Began {
    at: Instant,
    wall_nanos: u128,
}

/// Records closed spans for a [`SpanCapture`]; sensitive fields redacted as in the logs.
pub(crate) struct CaptureLayer(SpanCapture, Redaction);

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !self.0.0.armed.load(Ordering::Acquire) {
            return;
        }
        if let Some(span) = ctx.span(id) {
            let wall_nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            span.extensions_mut().insert(Began {
                at: Instant::now(),
                wall_nanos,
            });
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if !self.0.0.armed.load(Ordering::Acquire) {
            return;
        }
        let Some(span) = ctx.span(&id) else { return };
        let ext = span.extensions();
        // Spans that began before the capture was armed are not part of it.
        let Some(began) = ext.get::<Began>() else {
            return;
        };
        let fields: Map<String, Value> = ext
            .get::<Fields>()
            .map(|f| {
                f.0.iter()
                    .map(|(k, v)| (k.clone(), self.1.apply(k, v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let record = json!({
            "name": fields.get("otel.name").cloned().unwrap_or_else(|| Value::from(span.name())),
            "target": span.metadata().target(),
            "span_id": id.into_u64(),
            "parent_id": span.parent().map(|p| p.id().into_u64()),
            "start_unix_nanos": began.wall_nanos.to_string(),
            "duration_us": began.at.elapsed().as_micros() as u64,
            "fields": fields,
        });
        let mut records = self.0.0.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.0.len() < MAX_RECORDS {
            records.0.push(record);
        } else {
            records.1 += 1;
        }
    }
}
