//! The activity log: JSON pages, or Server-Sent Events with `follow=true`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;

use aether_domain::{Error, Timestamp};
use aether_ports::*;

use super::page_json;
use crate::AppState;
use crate::error::HttpError;
use crate::extract::{Caller, Query, Segment};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct EventsQuery {
    after_sequence: Option<u64>,
    since: Option<String>,
    until: Option<String>,
    /// Comma-separated event types.
    types: Option<String>,
    page_size: Option<u32>,
    page_token: Option<String>,
    follow: Option<bool>,
}

fn wants_stream(q: &EventsQuery, headers: &HeaderMap) -> bool {
    q.follow.unwrap_or(false)
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"))
}

pub(crate) async fn events<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    if wants_stream(&q, &headers) {
        // A reconnecting EventSource resumes after the last id it saw.
        let resume = headers
            .get("last-event-id")
            .map(|v| {
                v.to_str()
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| Error::invalid("Last-Event-ID is not a sequence number"))
            })
            .transpose()?;
        let after = resume.or(q.after_sequence).unwrap_or(0);
        let feed = st.api.follow_events(&ctx, &id, after).await?;
        let stream = st
            .config
            .draining
            .bound(feed)
            .map(|item| -> Result<SseEvent, Infallible> {
                Ok(match item {
                    Ok(e) => SseEvent::default()
                        .id(e.sequence.to_string())
                        .event("event")
                        .data(serde_json::to_string(&e).unwrap_or_default()),
                    Err(e) => SseEvent::default().event("error").data(e.message),
                })
            });
        return Ok(Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response());
    }
    let parse_time = |raw: &Option<String>, name: &str| -> Result<Option<Timestamp>, Error> {
        raw.as_deref()
            .map(|s| {
                Timestamp::parse_rfc3339(s)
                    .map_err(|e| Error::invalid(format!("{name}: {}", e.message)))
            })
            .transpose()
    };
    let req = ListEventsRequest {
        after_sequence: q.after_sequence,
        since: parse_time(&q.since, "since")?,
        until: parse_time(&q.until, "until")?,
        types: q
            .types
            .map(|t| {
                t.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        page: PageRequest {
            page_size: q.page_size,
            page_token: q.page_token,
        },
    };
    Ok(page_json(
        "events",
        st.api.list_events(&ctx, &id, req).await?,
    ))
}
