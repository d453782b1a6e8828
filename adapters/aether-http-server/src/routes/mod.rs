//! The `/v1` route table and the operational endpoints.

mod bus;
mod content;
mod events;
mod filesystem;
mod insight;
mod knowledge;
mod review;
mod secrets;
mod sessions;
mod sources;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Method, Uri};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use schemars::{Schema, SchemaGenerator};
use serde::Deserialize;

use aether_domain::Error;
use aether_ports::*;

use crate::error::HttpError;
use crate::{AppState, HttpConfig};

/// How a route takes or answers a body, for the OpenAPI document.
#[derive(Clone, Copy)]
pub(crate) enum Doc {
    None,
    Empty,
    Raw,
    Json(fn(&mut SchemaGenerator) -> Schema),
    /// A page: `{"<plural>": [T], "nextPageToken"}`.
    Page(&'static str, fn(&mut SchemaGenerator) -> Schema),
}

fn schema<T: schemars::JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// How a route is served: its own handler, or the `POST /v1/sessions/{id}:verb` dispatcher.
pub(crate) enum Serve<A> {
    Handler(Box<MethodRouter<AppState<A>>>),
    Verb,
}

/// One documented operation; the router and `/v1/openapi.json` are both built from these.
pub(crate) struct Route<A> {
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    pub(crate) id: &'static str,
    pub(crate) summary: &'static str,
    /// Query parameters: name, type (`string`, `integer`, `boolean`), required.
    pub(crate) query: &'static [(&'static str, &'static str, bool)],
    pub(crate) body: Doc,
    pub(crate) reply: Doc,
    pub(crate) serve: Serve<A>,
}

macro_rules! route {
    ($method:ident $path:literal, $id:literal, $summary:literal, query: $query:expr, body: $body:expr, reply: $reply:expr, $serve:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            id: $id,
            summary: $summary,
            query: $query,
            body: $body,
            reply: $reply,
            serve: $serve,
        }
    };
}

const PAGE: &[(&str, &str, bool)] = &[
    ("pageSize", "integer", false),
    ("pageToken", "string", false),
];

/// Every `/v1` operation.
pub(crate) fn table<A: AetherApi + Clone + 'static>() -> Vec<Route<A>> {
    use Doc::*;
    use Serve::*;
    vec![
        route!(POST "/v1/sessions", "createSession", "Create a session (empty base)", query: &[], body: Json(schema::<CreateSessionRequest>), reply: Json(schema::<Session>), Handler(Box::new(post(sessions::create::<A>)))),
        route!(GET "/v1/sessions", "listSessions", "List sessions of the caller's tenant", query: &[("status", "string", false), ("tag", "string", false), ("sourceId", "string", false), ("pageSize", "integer", false), ("pageToken", "string", false)], body: None, reply: Page("sessions", schema::<Session>), Handler(Box::new(get(sessions::list::<A>)))),
        route!(GET "/v1/sessions/{id}", "getSession", "Get a session", query: &[], body: None, reply: Json(schema::<Session>), Handler(Box::new(get(sessions::get::<A>)))),
        route!(DELETE "/v1/sessions/{id}", "deleteSession", "Delete a session with its checkpoints and events", query: &[], body: None, reply: Empty, Handler(Box::new(delete(sessions::delete::<A>)))),
        route!(POST "/v1/sessions/{id}:archive", "archiveSession", "Archive a session (content kept, writes refused)", query: &[], body: None, reply: Json(schema::<Session>), Verb),
        route!(POST "/v1/sessions/{id}:reactivate", "reactivateSession", "Reactivate an archived session", query: &[], body: None, reply: Json(schema::<Session>), Verb),
        route!(POST "/v1/sessions/{id}/fork", "forkSession", "Fork a session in O(1)", query: &[], body: Json(schema::<ForkSessionRequest>), reply: Json(schema::<Session>), Handler(Box::new(post(sessions::fork::<A>)))),
        route!(POST "/v1/sessions/{id}/checkpoints", "createCheckpoint", "Checkpoint the session's tree", query: &[], body: Json(schema::<CreateCheckpointRequest>), reply: Json(schema::<Checkpoint>), Handler(Box::new(post(sessions::create_checkpoint::<A>)))),
        route!(GET "/v1/sessions/{id}/checkpoints", "listCheckpoints", "List checkpoints", query: PAGE, body: None, reply: Page("checkpoints", schema::<Checkpoint>), Handler(Box::new(get(sessions::list_checkpoints::<A>)))),
        route!(POST "/v1/sessions/{id}/restore", "restoreCheckpoint", "Restore the tree (or some paths) from a checkpoint", query: &[], body: Json(schema::<RestoreRequest>), reply: Json(schema::<Session>), Handler(Box::new(post(sessions::restore::<A>)))),
        route!(GET "/v1/sessions/{id}/manifest", "manifest", "List entries under a path, sorted by path", query: &[("pathPrefix", "string", false), ("recursive", "boolean", false), ("includeCasExtents", "boolean", false), ("pageSize", "integer", false), ("pageToken", "string", false)], body: None, reply: Page("entries", schema::<Entry>), Handler(Box::new(get(filesystem::manifest::<A>)))),
        route!(POST "/v1/sessions/{id}/dirs", "mkdir", "Create a directory", query: &[], body: Json(schema::<MkdirRequest>), reply: Json(schema::<Entry>), Handler(Box::new(post(filesystem::mkdir::<A>)))),
        route!(DELETE "/v1/sessions/{id}/dirs", "rmdir", "Remove a directory (empty unless recursive)", query: &[("path", "string", true), ("recursive", "boolean", false)], body: None, reply: Empty, Handler(Box::new(delete(filesystem::rmdir::<A>)))),
        route!(GET "/v1/sessions/{id}/files", "readFile", "Read a file's bytes (Range honoured)", query: &[("path", "string", true)], body: None, reply: Raw, Handler(Box::new(get(content::read::<A>)))),
        route!(PUT "/v1/sessions/{id}/files", "writeFile", "Replace a file's content with the raw body", query: &[("path", "string", true), ("mode", "string", false), ("parents", "boolean", false), ("expectedHash", "string", false)], body: Raw, reply: Json(schema::<Entry>), Handler(Box::new(put(content::write::<A>)))),
        route!(DELETE "/v1/sessions/{id}/files", "deleteFile", "Delete a non-directory entry", query: &[("path", "string", true), ("expectedHash", "string", false)], body: None, reply: Empty, Handler(Box::new(delete(content::delete::<A>)))),
        route!(POST "/v1/sessions/{id}/patchSegments", "patchSegments", "Write byte ranges of a file", query: &[], body: Json(schema::<PatchSegmentsRequest>), reply: Json(schema::<Entry>), Handler(Box::new(post(content::patch::<A>)))),
        route!(POST "/v1/sessions/{id}/rename", "rename", "Rename or exchange entries", query: &[], body: Json(schema::<RenameRequest>), reply: Empty, Handler(Box::new(post(filesystem::rename::<A>)))),
        route!(POST "/v1/sessions/{id}:link", "link", "Create a hard link", query: &[], body: Json(schema::<LinkRequest>), reply: Json(schema::<Entry>), Verb),
        route!(POST "/v1/sessions/{id}:unlink", "unlink", "Remove a non-directory entry", query: &[], body: Json(schema::<PathRequest>), reply: Empty, Verb),
        route!(POST "/v1/sessions/{id}/symlinks", "symlink", "Create a symbolic link", query: &[], body: Json(schema::<SymlinkRequest>), reply: Json(schema::<Entry>), Handler(Box::new(post(filesystem::symlink::<A>)))),
        route!(GET "/v1/sessions/{id}/readSymlink", "readSymlink", "Read a symbolic link's target", query: &[("path", "string", true)], body: None, reply: Json(schema::<SymlinkTarget>), Handler(Box::new(get(filesystem::read_symlink::<A>)))),
        route!(POST "/v1/sessions/{id}:setXattr", "setXattr", "Set an extended attribute", query: &[], body: Json(schema::<SetXattrRequest>), reply: Empty, Verb),
        route!(POST "/v1/sessions/{id}:getXattr", "getXattr", "Get an extended attribute", query: &[], body: Json(schema::<XattrRequest>), reply: Json(schema::<XattrValue>), Verb),
        route!(POST "/v1/sessions/{id}:listXattrs", "listXattrs", "List extended attribute names", query: &[], body: Json(schema::<PathRequest>), reply: Json(schema::<XattrNames>), Verb),
        route!(POST "/v1/sessions/{id}:removeXattr", "removeXattr", "Remove an extended attribute", query: &[], body: Json(schema::<XattrRequest>), reply: Empty, Verb),
        route!(POST "/v1/sessions/{id}:setAttributes", "setAttributes", "Change mode, owner or times", query: &[], body: Json(schema::<SetAttributesRequest>), reply: Json(schema::<Entry>), Verb),
        route!(POST "/v1/sessions/{id}:mknod", "mknod", "Create a FIFO, socket or device node", query: &[], body: Json(schema::<MknodRequest>), reply: Json(schema::<Entry>), Verb),
        route!(POST "/v1/sessions/{id}/batch", "batch", "Apply mutations atomically", query: &[], body: Json(schema::<BatchRequest>), reply: Json(schema::<BatchResponse>), Handler(Box::new(post(filesystem::batch::<A>)))),
        route!(GET "/v1/sessions/{id}/events", "listEvents", "The activity log; follow=true streams Server-Sent Events", query: &[("afterSequence", "integer", false), ("since", "string", false), ("until", "string", false), ("types", "string", false), ("pageSize", "integer", false), ("pageToken", "string", false), ("follow", "boolean", false)], body: None, reply: Page("events", schema::<Event>), Handler(Box::new(get(events::events::<A>)))),
        route!(POST "/v1/sources", "createSource", "Create a source (import it next)", query: &[], body: Json(schema::<CreateSourceRequest>), reply: Json(schema::<Source>), Handler(Box::new(post(sources::create::<A>)))),
        route!(GET "/v1/sources", "listSources", "List sources", query: PAGE, body: None, reply: Page("sources", schema::<Source>), Handler(Box::new(get(sources::list::<A>)))),
        route!(GET "/v1/sources/{sourceId}", "getSource", "Get a source", query: &[], body: None, reply: Json(schema::<Source>), Handler(Box::new(get(sources::get::<A>)))),
        route!(PUT "/v1/sources/{sourceId}/archive", "uploadArchive", "Upload a tar archive and import it (a job)", query: &[], body: Raw, reply: Json(schema::<Job>), Handler(Box::new(put(sources::archive::<A>)))),
        route!(POST "/v1/sources/{sourceId}/startImport", "startImport", "Import the origin as the first revision (a job)", query: &[], body: None, reply: Json(schema::<Job>), Handler(Box::new(post(sources::start_import::<A>)))),
        route!(POST "/v1/sources/{sourceId}/refresh", "refreshSource", "Import the origin again as a new revision (a job)", query: &[], body: None, reply: Json(schema::<Job>), Handler(Box::new(post(sources::refresh::<A>)))),
        route!(POST "/v1/sources/{sourceId}/promoteSession", "promoteSession", "Make a session's tree the next revision (approval-gated; conflicts mark the session)", query: &[], body: Json(schema::<PromoteSessionRequest>), reply: Json(schema::<Job>), Handler(Box::new(post(sources::promote::<A>)))),
        route!(GET "/v1/sources/{sourceId}/jobs/{jobId}", "getJob", "A job's state and progress", query: &[], body: None, reply: Json(schema::<Job>), Handler(Box::new(get(sources::job::<A>)))),
        route!(POST "/v1/sessions/{id}/bus:publish", "publish", "Publish a message on a topic of the session's bus", query: &[], body: Json(schema::<PublishRequest>), reply: Json(schema::<BusMessage>), Handler(Box::new(post(bus::publish::<A>)))),
        route!(GET "/v1/sessions/{id}/bus", "subscribe", "Server-Sent Events: retained matching messages (replayLimit), then live ones; `missed` events for a subscriber that fell behind", query: &[("topics", "string", false), ("scope", "string", false), ("replayLimit", "integer", false)], body: None, reply: Raw, Handler(Box::new(get(bus::subscribe::<A>)))),
        route!(GET "/v1/sessions/{id}/secrets", "listSecrets", "Names and scopes of the secrets the session can see (never values)", query: PAGE, body: None, reply: Page("secrets", schema::<SecretInfo>), Handler(Box::new(get(secrets::list::<A>)))),
        route!(GET "/v1/sessions/{id}/secrets/{secretName}", "getSecret", "A secret's value (scope: session, tenant, unscoped; the most specific when absent)", query: &[("scope", "string", false)], body: None, reply: Json(schema::<SecretValue>), Handler(Box::new(get(secrets::get::<A>)))),
        route!(PUT "/v1/sessions/{id}/secrets/{secretName}", "putSecret", "Store a secret, encrypted at rest (scope defaults to session)", query: &[("scope", "string", false)], body: Json(schema::<PutSecretRequest>), reply: Json(schema::<SecretInfo>), Handler(Box::new(put(secrets::put::<A>)))),
        route!(DELETE "/v1/sessions/{id}/secrets/{secretName}", "deleteSecret", "Delete a secret", query: &[("scope", "string", false)], body: None, reply: Empty, Handler(Box::new(delete(secrets::delete::<A>)))),
        route!(GET "/v1/sessions/{id}/health", "getHealth", "The session's last reported health", query: &[], body: None, reply: Json(schema::<SessionHealth>), Handler(Box::new(get(insight::health::<A>)))),
        route!(POST "/v1/sessions/{id}/health/report", "reportHealth", "Report the session's health and checks", query: &[], body: Json(schema::<ReportHealthRequest>), reply: Json(schema::<SessionHealth>), Handler(Box::new(post(insight::report::<A>)))),
        route!(POST "/v1/sessions/{id}/health:testResults", "reportTestResults", "Report test results (the health follows them)", query: &[], body: Json(schema::<TestResultsRequest>), reply: Json(schema::<SessionHealth>), Handler(Box::new(post(insight::test_results::<A>)))),
        route!(GET "/v1/sessions/{id}/analytics", "sessionAnalytics", "Writes, bytes written and read, checkpoints, restores, time to first write", query: &[], body: None, reply: Json(schema::<SessionAnalytics>), Handler(Box::new(get(insight::analytics::<A>)))),
        route!(GET "/v1/usage", "usage", "The caller's tenant over a window: session-hours, stored and egress bytes", query: &[("since", "string", false), ("until", "string", false)], body: None, reply: Json(schema::<Usage>), Handler(Box::new(get(insight::usage::<A>)))),
        route!(GET "/v1/metrics/cas", "casMetrics", "Blobs in the content store and how many are referenced", query: &[], body: None, reply: Json(schema::<CasMetrics>), Handler(Box::new(get(insight::cas::<A>)))),
        route!(GET "/v1/metrics/cas/refcounts", "casRefcounts", "How many blobs have each reference count", query: &[], body: None, reply: Json(schema::<CasRefcounts>), Handler(Box::new(get(insight::refcounts::<A>)))),
        route!(POST "/v1/sessions/{id}/commit", "commitSession", "Record the session's tree as a commit (approval-gated when the policy lists COMMIT)", query: &[], body: Json(schema::<CommitRequest>), reply: Json(schema::<Commit>), Handler(Box::new(post(review::commit::<A>)))),
        route!(GET "/v1/sessions/{id}/commits", "listCommits", "List commits", query: PAGE, body: None, reply: Page("commits", schema::<Commit>), Handler(Box::new(get(review::list_commits::<A>)))),
        route!(POST "/v1/sessions/{id}/request-approval", "requestApproval", "Ask for an approval bound to the current generation", query: &[], body: Json(schema::<RequestApprovalRequest>), reply: Json(schema::<Approval>), Handler(Box::new(post(review::request_approval::<A>)))),
        route!(POST "/v1/sessions/{id}/approvals/{approvalId}/grant", "grantApproval", "Grant a pending, current approval (another principal than the requester)", query: &[], body: Json(schema::<DecideApprovalRequest>), reply: Json(schema::<Approval>), Handler(Box::new(post(review::grant::<A>)))),
        route!(POST "/v1/sessions/{id}/approvals/{approvalId}/deny", "denyApproval", "Deny a pending, current approval", query: &[], body: Json(schema::<DecideApprovalRequest>), reply: Json(schema::<Approval>), Handler(Box::new(post(review::deny::<A>)))),
        route!(GET "/v1/sessions/{id}/approvals", "listApprovals", "List approvals (stale ones read STALE)", query: PAGE, body: None, reply: Page("approvals", schema::<Approval>), Handler(Box::new(get(review::list_approvals::<A>)))),
        route!(POST "/v1/sessions/{id}/annotations", "createAnnotation", "Add a review note, optionally anchored to a path, line and content hash", query: &[], body: Json(schema::<CreateAnnotationRequest>), reply: Json(schema::<Annotation>), Handler(Box::new(post(review::create_annotation::<A>)))),
        route!(GET "/v1/sessions/{id}/annotations", "listAnnotations", "List annotations", query: &[("status", "string", false), ("pageSize", "integer", false), ("pageToken", "string", false)], body: None, reply: Page("annotations", schema::<Annotation>), Handler(Box::new(get(review::list_annotations::<A>)))),
        route!(PATCH "/v1/sessions/{id}/annotations/{annotationId}", "updateAnnotation", "Resolve or reopen an annotation", query: &[], body: Json(schema::<UpdateAnnotationRequest>), reply: Json(schema::<Annotation>), Handler(Box::new(patch(review::update_annotation::<A>)))),
        route!(POST "/v1/sessions/{id}/request-review", "requestReview", "Move the session to PENDING_REVIEW", query: &[], body: Json(schema::<RequestReviewRequest>), reply: Json(schema::<Session>), Handler(Box::new(post(review::request_review::<A>)))),
        route!(GET "/v1/sessions/{id}/cache/keys", "listCacheKeys", "List knowledge-cache keys, sorted", query: &[("prefix", "string", false), ("pageSize", "integer", false), ("pageToken", "string", false)], body: None, reply: Page("keys", schema::<String>), Handler(Box::new(get(knowledge::keys::<A>)))),
        route!(GET "/v1/sessions/{id}/cache/stats", "cacheStats", "Count and total size of the knowledge cache", query: &[], body: None, reply: Json(schema::<CacheStats>), Handler(Box::new(get(knowledge::stats::<A>)))),
        route!(POST "/v1/sessions/{id}/cache/batch-get", "cacheBatchGet", "Read several keys", query: &[], body: Json(schema::<CacheKeysRequest>), reply: Json(schema::<BatchGetResponse>), Handler(Box::new(post(knowledge::batch_get::<A>)))),
        route!(POST "/v1/sessions/{id}/cache/batch-set", "cacheBatchSet", "Write several keys atomically", query: &[], body: Json(schema::<BatchSetRequest>), reply: Json(schema::<BatchSetResponse>), Handler(Box::new(post(knowledge::batch_set::<A>)))),
        route!(POST "/v1/sessions/{id}/cache/batch-delete", "cacheBatchDelete", "Delete several keys atomically", query: &[], body: Json(schema::<CacheKeysRequest>), reply: Json(schema::<DeletedCount>), Handler(Box::new(post(knowledge::batch_delete::<A>)))),
        route!(POST "/v1/sessions/{id}/cache/delete-by-prefix", "cacheDeleteByPrefix", "Delete every key with a prefix", query: &[], body: Json(schema::<DeleteByPrefixRequest>), reply: Json(schema::<DeletedCount>), Handler(Box::new(post(knowledge::delete_by_prefix::<A>)))),
        route!(GET "/v1/sessions/{id}/cache/{key}", "cacheGet", "Read a key (a key with / is percent-encoded)", query: &[], body: None, reply: Json(schema::<CacheEntry>), Handler(Box::new(get(knowledge::get_key::<A>)))),
        route!(PUT "/v1/sessions/{id}/cache/{key}", "cachePut", "Write a key, optionally with a TTL", query: &[], body: Json(schema::<PutCacheRequest>), reply: Json(schema::<CacheMetadata>), Handler(Box::new(put(knowledge::put_key::<A>)))),
        route!(DELETE "/v1/sessions/{id}/cache/{key}", "cacheDelete", "Delete a key", query: &[], body: None, reply: Empty, Handler(Box::new(delete(knowledge::delete_key::<A>)))),
        route!(GET "/v1/sessions/{id}/cache/{key}/exists", "cacheExists", "Whether a key is present", query: &[], body: None, reply: Json(schema::<CacheExists>), Handler(Box::new(get(knowledge::exists::<A>)))),
        route!(GET "/v1/sessions/{id}/cache/{key}/metadata", "cacheMetadata", "A key's size, version, times and TTL", query: &[], body: None, reply: Json(schema::<CacheMetadata>), Handler(Box::new(get(knowledge::metadata::<A>)))),
        route!(POST "/v1/sessions/{id}/cache/{key}/compare-and-set", "cacheCompareAndSet", "Write a key only if it is at the expected version (0: absent)", query: &[], body: Json(schema::<CompareAndSetRequest>), reply: Json(schema::<CompareAndSetResponse>), Handler(Box::new(post(knowledge::compare_and_set::<A>)))),
    ]
}

/// Builds the router serving `api` under `/v1`, plus `/healthz`, `/readyz` and `/v1/openapi.json`.
pub fn router<A: AetherApi + Readiness + Clone + 'static>(api: A, config: HttpConfig) -> Router {
    let file_limit = config.limits.max_file_bytes;
    let routes = table::<A>();
    let openapi = Arc::new(crate::openapi::document(&routes));
    let limiter = Arc::new(crate::ratelimit::TenantLimiter::new(
        config.limits.tenant_requests_per_sec,
        config.limits.tenant_burst,
    ));
    let timeout = config.limits.request_timeout;
    let state = AppState {
        api,
        config: Arc::new(config),
        limiter,
    };
    let mut v1: Router<AppState<A>> = Router::new();
    for r in routes {
        if let Serve::Handler(h) = r.serve {
            let h = *h;
            let h = if r.path.ends_with("/files") || r.path.ends_with("/archive") {
                h.layer(DefaultBodyLimit::max(file_limit))
            } else {
                h
            };
            v1 = v1.route(r.path, h);
        }
    }
    v1 = v1.route("/v1/sessions/{id}", post(sessions::verb::<A>));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<A>))
        .route(
            "/v1/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi.as_str().to_owned(),
                )
            }),
        )
        .merge(v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(move |req, next| {
            with_timeout(timeout, req, next)
        }))
        .with_state(state)
}

/// Bounds the time to a response's head; a streaming body (the changefeed) may then run on.
async fn with_timeout(
    limit: std::time::Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let what = format!("{} {}", req.method(), req.uri().path());
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => HttpError::from(Error::unavailable(format!(
            "{what} took longer than {} s; retry",
            limit.as_secs()
        )))
        .into_response(),
    }
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

/// A list page named after its route: `{"<plural>": [...], "nextPageToken": "...", ...}`,
/// serialised straight from the items (no intermediate JSON tree).
pub(crate) struct PageReply<'a, T> {
    pub(crate) plural: &'static str,
    pub(crate) items: &'a [T],
    pub(crate) next_page_token: Option<&'a str>,
    pub(crate) generation: Option<u64>,
}

impl<T: serde::Serialize> serde::Serialize for PageReply<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry(self.plural, self.items)?;
        if let Some(t) = self.next_page_token {
            m.serialize_entry("nextPageToken", t)?;
        }
        if let Some(g) = self.generation {
            m.serialize_entry("generation", &g)?;
        }
        m.end()
    }
}

pub(crate) fn page_json<T: serde::Serialize>(
    plural: &'static str,
    page: aether_ports::Page<T>,
) -> axum::response::Response {
    let reply = PageReply {
        plural,
        items: &page.items,
        next_page_token: page.next_page_token.as_deref(),
        generation: None,
    };
    json_reply(&reply, page.items.len())
}

/// Serialises into one pre-sized buffer: far fewer copies than writing through a growing
/// `BytesMut`, which matters for 1000-entry pages.
pub(crate) fn json_reply<T: serde::Serialize>(value: &T, items: usize) -> axum::response::Response {
    let mut buf = Vec::with_capacity(256 + items * 320);
    match serde_json::to_writer(&mut buf, value) {
        Ok(()) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            buf,
        )
            .into_response(),
        Err(e) => HttpError::from(Error::internal(format!("encode a reply: {e}"))).into_response(),
    }
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

/// (method, path, operationId, served by the `:verb` dispatcher) of every documented operation.
pub fn documented_operations<A: AetherApi + Clone + 'static>()
-> Vec<(String, &'static str, &'static str, bool)> {
    table::<A>()
        .into_iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path,
                r.id,
                matches!(r.serve, Serve::Verb),
            )
        })
        .collect()
}
