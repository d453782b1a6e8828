//! Health, analytics, usage and CAS metrics routes.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use aether_domain::{Error, Timestamp};
use aether_ports::*;

use crate::AppState;
use crate::error::HttpError;
use crate::extract::{Caller, JsonBody, Query, Segment};

type Res = Result<Response, HttpError>;

pub(crate) async fn health<A: InsightApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
) -> Res {
    Ok(Json(st.api.get_health(&ctx, &id).await?).into_response())
}

pub(crate) async fn report<A: InsightApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<ReportHealthRequest>,
) -> Res {
    Ok(Json(st.api.report_health(&ctx, &id, req).await?).into_response())
}

pub(crate) async fn test_results<A: InsightApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<TestResultsRequest>,
) -> Res {
    Ok(Json(st.api.report_test_results(&ctx, &id, req).await?).into_response())
}

pub(crate) async fn analytics<A: InsightApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
) -> Res {
    Ok(Json(st.api.analytics(&ctx, &id).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UsageQuery {
    since: Option<String>,
    until: Option<String>,
}

pub(crate) async fn usage<A: InsightApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Query(q): Query<UsageQuery>,
) -> Res {
    let time = |raw: &Option<String>, name: &str| -> Result<Option<Timestamp>, Error> {
        raw.as_deref()
            .map(|s| {
                Timestamp::parse_rfc3339(s)
                    .map_err(|e| Error::invalid(format!("{name}: {}", e.message)))
            })
            .transpose()
    };
    let req = UsageRequest {
        since: time(&q.since, "since")?,
        until: time(&q.until, "until")?,
    };
    Ok(Json(st.api.usage(&ctx, req).await?).into_response())
}

pub(crate) async fn cas<A: InsightApi>(State(st): State<AppState<A>>, Caller(ctx): Caller) -> Res {
    Ok(Json(st.api.cas_metrics(&ctx).await?).into_response())
}

pub(crate) async fn refcounts<A: InsightApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
) -> Res {
    Ok(Json(st.api.cas_refcounts(&ctx).await?).into_response())
}
