//! OTLP export (adapter layer): spans and metrics go to the collector that the standard
//! `OTEL_EXPORTER_OTLP_*` variables name, over HTTP with protobuf bodies; and the W3C
//! `traceparent` header that carries a span from one process into the next.

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The variables that turn export on, each for what it names; the exporter reads them itself
/// (a per-signal endpoint is used as is, the general one gets `/v1/traces` or `/v1/metrics`).
const ENDPOINT_VARS: [&str; 3] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
];

/// Whether the environment names a collector for `signal` (`traces` or `metrics`).
/// A value that is not an http(s) URL is an error naming the variable.
pub fn export_wanted(env: &[(String, String)], signal: &str) -> Result<bool, String> {
    let specific = format!(
        "OTEL_EXPORTER_OTLP_{}_ENDPOINT",
        signal.to_ascii_uppercase()
    );
    let mut wanted = false;
    for (k, v) in env {
        if !ENDPOINT_VARS.contains(&k.as_str()) || v.trim().is_empty() {
            continue;
        }
        if !(v.starts_with("http://") || v.starts_with("https://")) {
            return Err(format!(
                "{k}={v:?} is not an OTLP/HTTP endpoint; expected a URL such as http://127.0.0.1:4318"
            ));
        }
        wanted |= k == "OTEL_EXPORTER_OTLP_ENDPOINT" || *k == specific;
    }
    Ok(wanted)
}

/// The process's resource: `service.name` is what a trace viewer shows for each span.
pub(crate) fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_owned())
        .build()
}

/// A tracer provider that batches spans to the configured collector.
pub(crate) fn tracer_provider(service: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("OTLP trace export: {e}"))?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource(service))
        .with_batch_exporter(exporter)
        .build())
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`.
pub(crate) fn layer<S>(
    provider: &SdkTracerProvider,
    service: &str,
) -> impl tracing_subscriber::Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(service.to_owned()))
}

/// The W3C `traceparent` of the current span, when spans are being exported.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// Makes `span` continue the remote trace a `traceparent` header names. A malformed header is
/// ignored (the span then starts a trace of its own), as W3C trace context asks.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    if let Some(sc) = parse_traceparent(traceparent) {
        let cx = opentelemetry::Context::new().with_remote_span_context(sc);
        let _ = span.set_parent(cx);
    }
}

fn parse_traceparent(header: &str) -> Option<SpanContext> {
    let mut parts = header.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace = TraceId::from_hex(trace).ok()?;
    let span = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace,
        span,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn export_follows_the_standard_variables() {
        assert_eq!(export_wanted(&env(&[]), "traces"), Ok(false));
        let general = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]);
        assert_eq!(export_wanted(&general, "traces"), Ok(true));
        assert_eq!(export_wanted(&general, "metrics"), Ok(true));
        let traces_only = env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c/v1/traces")]);
        assert_eq!(export_wanted(&traces_only, "traces"), Ok(true));
        assert_eq!(export_wanted(&traces_only, "metrics"), Ok(false));
        assert_eq!(
            export_wanted(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]), "traces"),
            Ok(false)
        );
        let bad = export_wanted(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318")]), "traces")
            .expect_err("not a URL");
        assert!(bad.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{bad}");
    }

    #[test]
    fn traceparent_headers_parse_by_the_w3c_rules() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(ok).expect("valid");
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-xyz92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?}");
        }
    }
}
