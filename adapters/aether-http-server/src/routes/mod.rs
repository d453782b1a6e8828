//! The `/v1` route table and the operational endpoints.

mod content;
mod events;
mod filesystem;
mod sessions;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;

use aether_domain::Error;
use aether_ports::{PageRequest, Readiness, SessionApi};

use crate::error::HttpError;
use crate::{AppState, HttpConfig};

/// Builds the router serving `api` under `/v1`, plus `/healthz` and `/readyz`.
pub fn router<A: SessionApi + Readiness + Clone + 'static>(api: A, config: HttpConfig) -> Router {
    let file_limit = config.limits.max_file_bytes;
    let state = AppState {
        api,
        config: Arc::new(config),
    };
    let sessions = Router::new()
        .route(
            "/v1/sessions",
            post(sessions::create::<A>).get(sessions::list::<A>),
        )
        .route(
            "/v1/sessions/{id}",
            get(sessions::get::<A>)
                .delete(sessions::delete::<A>)
                .post(sessions::verb::<A>),
        )
        .route("/v1/sessions/{id}/fork", post(sessions::fork::<A>))
        .route(
            "/v1/sessions/{id}/checkpoints",
            post(sessions::create_checkpoint::<A>).get(sessions::list_checkpoints::<A>),
        )
        .route("/v1/sessions/{id}/restore", post(sessions::restore::<A>))
        .route("/v1/sessions/{id}/manifest", get(filesystem::manifest::<A>))
        .route(
            "/v1/sessions/{id}/dirs",
            post(filesystem::mkdir::<A>).delete(filesystem::rmdir::<A>),
        )
        .route("/v1/sessions/{id}/rename", post(filesystem::rename::<A>))
        .route("/v1/sessions/{id}/symlinks", post(filesystem::symlink::<A>))
        .route(
            "/v1/sessions/{id}/readSymlink",
            get(filesystem::read_symlink::<A>),
        )
        .route("/v1/sessions/{id}/batch", post(filesystem::batch::<A>))
        .route("/v1/sessions/{id}/patchSegments", post(content::patch::<A>))
        .route("/v1/sessions/{id}/events", get(events::events::<A>))
        .route(
            "/v1/sessions/{id}/files",
            get(content::read::<A>)
                .put(content::write::<A>)
                .delete(content::delete::<A>)
                .layer(DefaultBodyLimit::max(file_limit)),
        );
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<A>))
        .merge(sessions)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn readyz<A: Readiness>(State(st): State<AppState<A>>) -> Result<&'static str, HttpError> {
    st.api
        .ready()
        .await
        .map_err(|e| Error::unavailable(format!("not ready: {}", e.message)))?;
    Ok("ready")
}

async fn not_found(method: Method, uri: Uri) -> HttpError {
    Error::not_found(format!("no route for {method} {}", uri.path())).into()
}

async fn method_not_allowed(method: Method, uri: Uri) -> HttpError {
    HttpError::with_status(
        Error::invalid(format!("method {method} is not allowed on {}", uri.path())),
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
    )
}

/// `pageSize`/`pageToken` as query parameters.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct PageQuery {
    page_size: Option<u32>,
    page_token: Option<String>,
}

impl From<PageQuery> for PageRequest {
    fn from(q: PageQuery) -> Self {
        PageRequest {
            page_size: q.page_size,
            page_token: q.page_token,
        }
    }
}

/// A list page named after its route: `{"<plural>": [...], "nextPageToken": "..."}`.
pub(crate) fn page_json<T: serde::Serialize>(
    plural: &str,
    page: aether_ports::Page<T>,
) -> axum::response::Response {
    let mut body = serde_json::Map::new();
    body.insert(
        plural.to_owned(),
        serde_json::to_value(page.items).unwrap_or_default(),
    );
    if let Some(t) = page.next_page_token {
        body.insert("nextPageToken".into(), t.into());
    }
    axum::Json(body).into_response()
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(format!("invalid JSON body: {e}")).into())
}
