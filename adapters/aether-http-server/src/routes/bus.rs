//! Bus routes: `POST .../bus:publish`, and `GET .../bus` as Server-Sent Events (`message`
//! events with the message JSON and its sequence as id; `missed` events with a count).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;

use aether_ports::*;

use crate::AppState;
use crate::error::HttpError;
use crate::extract::{Caller, JsonBody, Query, Segment};

pub(crate) async fn publish<A: BusApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<PublishRequest>,
) -> Result<Response, HttpError> {
    Ok(Json(st.api.publish(&ctx, &id, req).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SubscribeQuery {
    /// Comma-separated topic globs.
    topics: Option<String>,
    scope: Option<String>,
    replay_limit: Option<u32>,
}

pub(crate) async fn subscribe<A: BusApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<SubscribeQuery>,
) -> Result<Response, HttpError> {
    let req = SubscribeRequest {
        topics: q
            .topics
            .map(|t| {
                t.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        scope: q.scope,
        replay_limit: q.replay_limit,
    };
    let feed = st.api.subscribe(&ctx, &id, req).await?;
    let stream = st
        .config
        .draining
        .bound(feed)
        .map(|item| -> Result<SseEvent, Infallible> {
            Ok(match item {
                Ok(BusDelivery::Message(m)) => SseEvent::default()
                    .id(m.sequence.to_string())
                    .event("message")
                    .data(serde_json::to_string(&m).unwrap_or_default()),
                Ok(BusDelivery::Missed { count }) => SseEvent::default()
                    .event("missed")
                    .data(format!("{{\"count\":{count}}}")),
                Err(e) => SseEvent::default().event("error").data(e.message),
            })
        });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
