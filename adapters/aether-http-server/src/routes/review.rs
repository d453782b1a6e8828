//! Review routes: commits, approvals (request, grant, deny, list), annotations and review
//! requests under `/v1/sessions/{id}/...`.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use aether_domain::Error;
use aether_ports::*;

use super::{PageQuery, page_json};
use crate::AppState;
use crate::error::HttpError;
use crate::extract::{Caller, JsonBody, Query, Segment};

type Res = Result<Response, HttpError>;

/// The session id and the id of an object below it (`.../approvals/{approvalId}/...`).
pub(crate) struct Ids {
    session: String,
    object: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path((session, object)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid(format!("invalid id in the path: {e}")))?;
        Ok(Ids { session, object })
    }
}

pub(crate) async fn commit<A: ReviewApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<CommitRequest>,
) -> Res {
    Ok(Json(st.api.commit(&ctx, &id, req).await?).into_response())
}

pub(crate) async fn list_commits<A: ReviewApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<PageQuery>,
) -> Res {
    Ok(page_json(
        "commits",
        st.api.list_commits(&ctx, &id, q.into()).await?,
    ))
}

pub(crate) async fn request_approval<A: ReviewApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<RequestApprovalRequest>,
) -> Res {
    Ok(Json(st.api.request_approval(&ctx, &id, req).await?).into_response())
}

pub(crate) async fn grant<A: ReviewApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    ids: Ids,
    JsonBody(req): JsonBody<DecideApprovalRequest>,
) -> Res {
    let a = st
        .api
        .grant_approval(&ctx, &ids.session, &ids.object, req)
        .await?;
    Ok(Json(a).into_response())
}

pub(crate) async fn deny<A: ReviewApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    ids: Ids,
    JsonBody(req): JsonBody<DecideApprovalRequest>,
) -> Res {
    let a = st
        .api
        .deny_approval(&ctx, &ids.session, &ids.object, req)
        .await?;
    Ok(Json(a).into_response())
}

pub(crate) async fn list_approvals<A: ReviewApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<PageQuery>,
) -> Res {
    Ok(page_json(
        "approvals",
        st.api.list_approvals(&ctx, &id, q.into()).await?,
    ))
}

pub(crate) async fn create_annotation<A: ReviewApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<CreateAnnotationRequest>,
) -> Res {
    Ok(Json(st.api.create_annotation(&ctx, &id, req).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AnnotationsQuery {
    status: Option<String>,
    page_size: Option<u32>,
    page_token: Option<String>,
}

pub(crate) async fn list_annotations<A: ReviewApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<AnnotationsQuery>,
) -> Res {
    let req = ListAnnotationsRequest {
        status: q.status,
        page: PageRequest {
            page_size: q.page_size,
            page_token: q.page_token,
        },
    };
    Ok(page_json(
        "annotations",
        st.api.list_annotations(&ctx, &id, req).await?,
    ))
}

pub(crate) async fn update_annotation<A: ReviewApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    ids: Ids,
    JsonBody(req): JsonBody<UpdateAnnotationRequest>,
) -> Res {
    let a = st
        .api
        .update_annotation(&ctx, &ids.session, &ids.object, req)
        .await?;
    Ok(Json(a).into_response())
}

pub(crate) async fn request_review<A: ReviewApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<RequestReviewRequest>,
) -> Res {
    Ok(Json(st.api.request_review(&ctx, &id, req).await?).into_response())
}
