//! The formatting layer: one JSON object (or text line) per event with timestamp, level,
//! target, component, trace and session ids and the fields of the event and its spans;
//! sensitive fields hashed; chatty debug targets sampled.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::writer::Sink;

/// Field names whose values never appear in logs (SPEC §5.4).
pub const SENSITIVE: [&str; 10] = [
    "path",
    "target_path",
    "link_path",
    "xattr_name",
    "token",
    "auth_token",
    "authorization",
    "session_token",
    "secret",
    "request_path",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

/// Hashes sensitive values (salted SHA-256, 16 hex digits) or leaves them.
#[derive(Debug, Clone)]
pub enum Redaction {
    Off,
    Hash { salt: String },
}

impl Redaction {
    pub fn apply(&self, key: &str, value: Value) -> Value {
        match self {
            Redaction::Hash { salt } if SENSITIVE.contains(&key) => {
                use sha2::{Digest, Sha256};
                let text = match &value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let mut h = Sha256::new();
                h.update(salt.as_bytes());
                h.update(text.as_bytes());
                Value::String(format!("sha256:{}", &hex::encode(h.finalize())[..16]))
            }
            _ => value,
        }
    }
}

/// Debug events of a target containing `needle` are kept one in `every`.
#[derive(Debug, Clone)]
pub struct Sample {
    pub needle: String,
    pub every: u64,
}

pub(crate) struct Fields(pub(crate) Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
}

pub(crate) struct LogLayer {
    pub(crate) format: Format,
    pub(crate) sink: Sink,
    pub(crate) redaction: Redaction,
    pub(crate) component: String,
    /// A session id for every line (the mount runtime serves one session).
    pub(crate) session_id: Option<String>,
    pub(crate) sampling: Vec<Sample>,
    pub(crate) seen: Mutex<HashMap<String, u64>>,
}

impl LogLayer {
    fn sampled_out(&self, level: &Level, target: &str) -> bool {
        if *level != Level::DEBUG {
            return false;
        }
        let Some(rule) = self.sampling.iter().find(|s| target.contains(&s.needle)) else {
            return false;
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let n = seen.entry(rule.needle.clone()).or_default();
        *n += 1;
        !(*n - 1).is_multiple_of(rule.every.max(1))
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for LogLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields(Map::new());
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        if self.sampled_out(meta.level(), meta.target()) {
            return;
        }
        let mut all = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<Fields>() {
                    all.extend(f.0.clone());
                }
            }
        }
        let mut own = Fields(Map::new());
        event.record(&mut own);
        all.extend(own.0);
        let message = all
            .remove("message")
            .unwrap_or(Value::String(String::new()));
        let session = all
            .remove("session_id")
            .or_else(|| self.session_id.clone().map(Value::String));
        let trace = all.remove("trace_id");
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let mut line = String::with_capacity(256);
        match self.format {
            Format::Json => {
                let mut obj = Map::new();
                obj.insert("timestamp".into(), Value::String(time));
                obj.insert("level".into(), Value::String(meta.level().to_string()));
                obj.insert("target".into(), Value::String(meta.target().to_owned()));
                obj.insert("component".into(), Value::String(self.component.clone()));
                obj.insert("trace_id".into(), trace.unwrap_or(Value::Null));
                obj.insert("session_id".into(), session.unwrap_or(Value::Null));
                obj.insert("message".into(), message);
                for (k, v) in all {
                    let v = self.redaction.apply(&k, v);
                    obj.insert(k, v);
                }
                line.push_str(&Value::Object(obj).to_string());
            }
            Format::Text => {
                let _ = write!(
                    line,
                    "{time} {:>5} {}: {}",
                    meta.level(),
                    meta.target(),
                    message
                        .as_str()
                        .map_or_else(|| message.to_string(), str::to_owned)
                );
                if let Some(Value::String(s)) = &session {
                    let _ = write!(line, " session_id={s}");
                }
                for (k, v) in all {
                    let v = self.redaction.apply(&k, v);
                    match v {
                        Value::String(s) => {
                            let _ = write!(line, " {k}={s:?}");
                        }
                        other => {
                            let _ = write!(line, " {k}={other}");
                        }
                    }
                }
            }
        }
        line.push('\n');
        self.sink.write_line(line.as_bytes());
    }
}
