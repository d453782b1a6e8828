//! Session lifecycle routes and the `POST /v1/sessions/{id}:verb` custom methods.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use aether_domain::{Error, SessionStatus};
use aether_ports::*;

use super::{PageQuery, page_json, parse_json};
use crate::AppState;
use crate::error::HttpError;
use crate::extract::{Caller, JsonBody, Query, Segment, body_bytes};

type Res = Result<Response, HttpError>;

pub(crate) async fn create<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    JsonBody(req): JsonBody<CreateSessionRequest>,
) -> Res {
    let s = st.api.create_session(&ctx, req).await?;
    Ok((StatusCode::OK, Json(s)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ListQuery {
    status: Option<String>,
    tag: Option<String>,
    source_id: Option<String>,
    page_size: Option<u32>,
    page_token: Option<String>,
}

pub(crate) async fn list<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Query(q): Query<ListQuery>,
) -> Res {
    let req = ListSessionsRequest {
        status: q.status.as_deref().map(SessionStatus::parse).transpose()?,
        tag: q.tag,
        source_id: q.source_id,
        page: PageRequest {
            page_size: q.page_size,
            page_token: q.page_token,
        },
    };
    Ok(page_json(
        "sessions",
        st.api.list_sessions(&ctx, req).await?,
    ))
}

pub(crate) async fn get<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
) -> Res {
    Ok(Json(st.api.get_session(&ctx, &id).await?).into_response())
}

pub(crate) async fn delete<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
) -> Res {
    st.api.delete_session(&ctx, &id).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

fn empty() -> Response {
    Json(serde_json::json!({})).into_response()
}

/// `POST /v1/sessions/{id}:verb`: the router captures `id:verb` as one segment.
pub(crate) async fn verb<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(target): Segment,
    req: Request,
) -> Res {
    let Some((id, verb)) = target.split_once(':') else {
        return Err(HttpError::with_status(
            Error::invalid(format!(
                "POST /v1/sessions/{target} needs a custom method such as :archive"
            )),
            StatusCode::METHOD_NOT_ALLOWED,
        ));
    };
    let body = body_bytes(req, st.config.limits.max_json_bytes).await?;
    let api = &st.api;
    Ok(match verb {
        "archive" => Json(api.archive_session(&ctx, id).await?).into_response(),
        "reactivate" => Json(api.reactivate_session(&ctx, id).await?).into_response(),
        "link" => Json(api.link(&ctx, id, parse_json(&body)?).await?).into_response(),
        "unlink" => {
            api.unlink(&ctx, id, parse_json(&body)?).await?;
            empty()
        }
        "setXattr" => {
            api.set_xattr(&ctx, id, parse_json(&body)?).await?;
            empty()
        }
        "getXattr" => Json(api.get_xattr(&ctx, id, parse_json(&body)?).await?).into_response(),
        "listXattrs" => Json(api.list_xattrs(&ctx, id, parse_json(&body)?).await?).into_response(),
        "removeXattr" => {
            api.remove_xattr(&ctx, id, parse_json(&body)?).await?;
            empty()
        }
        "setAttributes" => {
            Json(api.set_attributes(&ctx, id, parse_json(&body)?).await?).into_response()
        }
        "mknod" => Json(api.mknod(&ctx, id, parse_json(&body)?).await?).into_response(),
        other => return Err(Error::not_found(format!("unknown session method :{other}")).into()),
    })
}

pub(crate) async fn fork<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<ForkSessionRequest>,
) -> Res {
    Ok(Json(st.api.fork_session(&ctx, &id, req).await?).into_response())
}

pub(crate) async fn create_checkpoint<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<CreateCheckpointRequest>,
) -> Res {
    Ok(Json(st.api.create_checkpoint(&ctx, &id, req).await?).into_response())
}

pub(crate) async fn list_checkpoints<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<PageQuery>,
) -> Res {
    Ok(page_json(
        "checkpoints",
        st.api.list_checkpoints(&ctx, &id, q.into()).await?,
    ))
}

pub(crate) async fn restore<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<RestoreRequest>,
) -> Res {
    Ok(Json(st.api.restore_checkpoint(&ctx, &id, req).await?).into_response())
}
