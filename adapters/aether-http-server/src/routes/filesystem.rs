//! Namespace routes: manifest, dirs, rename, symlinks, batch.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use aether_ports::*;

use crate::AppState;
use crate::error::HttpError;
use crate::extract::{Caller, JsonBody, Query, Segment};

type Res = Result<Response, HttpError>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ManifestQuery {
    path_prefix: Option<String>,
    recursive: Option<bool>,
    include_cas_extents: Option<bool>,
    page_size: Option<u32>,
    page_token: Option<String>,
}

pub(crate) async fn manifest<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<ManifestQuery>,
) -> Res {
    let req = ManifestRequest {
        path_prefix: q.path_prefix,
        recursive: q.recursive,
        include_cas_extents: q.include_cas_extents,
        page: PageRequest {
            page_size: q.page_size,
            page_token: q.page_token,
        },
    };
    let m = st.api.manifest(&ctx, &id, req).await?;
    let reply = super::PageReply {
        plural: "entries",
        items: &m.entries.items,
        next_page_token: m.entries.next_page_token.as_deref(),
        generation: Some(m.generation),
    };
    Ok(super::json_reply(&reply, m.entries.items.len()))
}

pub(crate) async fn mkdir<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<MkdirRequest>,
) -> Res {
    Ok(Json(st.api.mkdir(&ctx, &id, req).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RmdirQuery {
    path: String,
    recursive: Option<bool>,
}

pub(crate) async fn rmdir<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<RmdirQuery>,
) -> Res {
    st.api
        .rmdir(
            &ctx,
            &id,
            RmdirRequest {
                path: q.path,
                recursive: q.recursive.unwrap_or(false),
            },
        )
        .await?;
    Ok(Json(serde_json::json!({})).into_response())
}

pub(crate) async fn rename<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<RenameRequest>,
) -> Res {
    st.api.rename(&ctx, &id, req).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

pub(crate) async fn symlink<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<SymlinkRequest>,
) -> Res {
    Ok(Json(st.api.symlink(&ctx, &id, req).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PathQuery {
    path: String,
}

pub(crate) async fn read_symlink<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<PathQuery>,
) -> Res {
    Ok(Json(st.api.read_symlink(&ctx, &id, &q.path).await?).into_response())
}

pub(crate) async fn batch<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<BatchRequest>,
) -> Res {
    Ok(Json(st.api.batch(&ctx, &id, req).await?).into_response())
}
