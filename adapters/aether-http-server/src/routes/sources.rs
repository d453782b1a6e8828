//! Source routes: `/v1/sources` (create, list, get), archive upload, import, refresh,
//! promotion, and jobs.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use aether_domain::Error;
use aether_ports::*;

use super::{PageQuery, page_json};
use crate::AppState;
use crate::error::HttpError;
use crate::extract::{Caller, JsonBody, Query, Segment, Upload};

type Res = Result<Response, HttpError>;

/// `/v1/sources/{sourceId}/jobs/{jobId}`.
pub(crate) struct JobPath {
    source: String,
    job: String,
}

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path((source, job)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid(format!("invalid id in the path: {e}")))?;
        Ok(JobPath { source, job })
    }
}

pub(crate) async fn create<A: SourcesApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    JsonBody(req): JsonBody<CreateSourceRequest>,
) -> Res {
    Ok(Json(st.api.create_source(&ctx, req).await?).into_response())
}

pub(crate) async fn list<A: SourcesApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Query(q): Query<PageQuery>,
) -> Res {
    let req = ListSourcesRequest { page: q.into() };
    Ok(page_json("sources", st.api.list_sources(&ctx, req).await?))
}

pub(crate) async fn get<A: SourcesApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
) -> Res {
    Ok(Json(st.api.get_source(&ctx, &id).await?).into_response())
}

pub(crate) async fn archive<A: SourcesApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    upload: Upload,
) -> Res {
    let Upload { body, limit } = upload;
    let job = st
        .api
        .upload_archive(&ctx, &id, body)
        .await
        .map_err(|e| limit.failure(e))?;
    Ok(Json(job).into_response())
}

pub(crate) async fn start_import<A: SourcesApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
) -> Res {
    Ok(Json(st.api.start_import(&ctx, &id).await?).into_response())
}

pub(crate) async fn refresh<A: SourcesApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
) -> Res {
    Ok(Json(st.api.refresh_source(&ctx, &id).await?).into_response())
}

pub(crate) async fn promote<A: SourcesApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<PromoteSessionRequest>,
) -> Res {
    Ok(Json(st.api.promote_session(&ctx, &id, req).await?).into_response())
}

pub(crate) async fn job<A: SourcesApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    p: JobPath,
) -> Res {
    Ok(Json(st.api.get_job(&ctx, &p.source, &p.job).await?).into_response())
}
