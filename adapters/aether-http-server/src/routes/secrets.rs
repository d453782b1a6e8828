//! Secret routes: `GET .../secrets` (names only), `GET|PUT|DELETE .../secrets/{secretName}`
//! with an optional `scope` query (`session`, `tenant`, `unscoped`).

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

pub(crate) struct NamePath {
    session: String,
    name: String,
}

impl<S: Send + Sync> FromRequestParts<S> for NamePath {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path((session, name)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid(format!("invalid secret name in the path: {e}")))?;
        Ok(NamePath { session, name })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ScopeQuery {
    scope: Option<String>,
}

impl From<ScopeQuery> for SecretScope {
    fn from(q: ScopeQuery) -> Self {
        SecretScope { scope: q.scope }
    }
}

pub(crate) async fn list<A: SecretsApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<PageQuery>,
) -> Res {
    let req = ListSecretsRequest { page: q.into() };
    Ok(page_json(
        "secrets",
        st.api.list_secrets(&ctx, &id, req).await?,
    ))
}

pub(crate) async fn get<A: SecretsApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    p: NamePath,
    Query(q): Query<ScopeQuery>,
) -> Res {
    let v = st
        .api
        .get_secret(&ctx, &p.session, &p.name, q.into())
        .await?;
    Ok(Json(v).into_response())
}

pub(crate) async fn put<A: SecretsApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    p: NamePath,
    Query(q): Query<ScopeQuery>,
    JsonBody(req): JsonBody<PutSecretRequest>,
) -> Res {
    let i = st
        .api
        .put_secret(&ctx, &p.session, &p.name, q.into(), req)
        .await?;
    Ok(Json(i).into_response())
}

pub(crate) async fn delete<A: SecretsApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    p: NamePath,
    Query(q): Query<ScopeQuery>,
) -> Res {
    st.api
        .delete_secret(&ctx, &p.session, &p.name, q.into())
        .await?;
    Ok(Json(serde_json::json!({})).into_response())
}
