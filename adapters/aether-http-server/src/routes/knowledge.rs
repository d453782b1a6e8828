//! Knowledge-cache routes: `/v1/sessions/{id}/cache/...`. A key is one path segment; a key
//! holding `/` arrives percent-encoded (`%2F`) and is decoded here.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use aether_domain::Error;
use aether_ports::*;

use super::page_json;
use crate::AppState;
use crate::error::HttpError;
use crate::extract::{Caller, JsonBody, Query, Segment};

type Res = Result<Response, HttpError>;

/// The session id and the (percent-decoded) cache key of a `.../cache/{key}` route.
pub(crate) struct KeyPath {
    session: String,
    key: String,
}

impl<S: Send + Sync> FromRequestParts<S> for KeyPath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path((session, key)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid(format!("invalid cache key in the path: {e}")))?;
        Ok(KeyPath { session, key })
    }
}

pub(crate) async fn get_key<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    k: KeyPath,
) -> Res {
    Ok(Json(st.api.cache_get(&ctx, &k.session, &k.key).await?).into_response())
}

pub(crate) async fn put_key<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    k: KeyPath,
    JsonBody(req): JsonBody<PutCacheRequest>,
) -> Res {
    Ok(Json(st.api.cache_put(&ctx, &k.session, &k.key, req).await?).into_response())
}

pub(crate) async fn delete_key<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    k: KeyPath,
) -> Res {
    st.api.cache_delete(&ctx, &k.session, &k.key).await?;
    Ok(Json(serde_json::json!({})).into_response())
}

pub(crate) async fn exists<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    k: KeyPath,
) -> Res {
    Ok(Json(st.api.cache_exists(&ctx, &k.session, &k.key).await?).into_response())
}

pub(crate) async fn metadata<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    k: KeyPath,
) -> Res {
    Ok(Json(st.api.cache_metadata(&ctx, &k.session, &k.key).await?).into_response())
}

pub(crate) async fn compare_and_set<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    k: KeyPath,
    JsonBody(req): JsonBody<CompareAndSetRequest>,
) -> Res {
    let reply = st
        .api
        .cache_compare_and_set(&ctx, &k.session, &k.key, req)
        .await?;
    Ok(Json(reply).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct KeysQuery {
    prefix: Option<String>,
    page_size: Option<u32>,
    page_token: Option<String>,
}

pub(crate) async fn keys<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<KeysQuery>,
) -> Res {
    let req = ListCacheKeysRequest {
        prefix: q.prefix,
        page: PageRequest {
            page_size: q.page_size,
            page_token: q.page_token,
        },
    };
    Ok(page_json("keys", st.api.cache_keys(&ctx, &id, req).await?))
}

pub(crate) async fn stats<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
) -> Res {
    Ok(Json(st.api.cache_stats(&ctx, &id).await?).into_response())
}

pub(crate) async fn batch_get<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<CacheKeysRequest>,
) -> Res {
    Ok(Json(st.api.cache_batch_get(&ctx, &id, req).await?).into_response())
}

pub(crate) async fn batch_set<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<BatchSetRequest>,
) -> Res {
    Ok(Json(st.api.cache_batch_set(&ctx, &id, req).await?).into_response())
}

pub(crate) async fn batch_delete<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<CacheKeysRequest>,
) -> Res {
    Ok(Json(st.api.cache_batch_delete(&ctx, &id, req).await?).into_response())
}

pub(crate) async fn delete_by_prefix<A: KnowledgeApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<DeleteByPrefixRequest>,
) -> Res {
    Ok(Json(st.api.cache_delete_by_prefix(&ctx, &id, req).await?).into_response())
}
