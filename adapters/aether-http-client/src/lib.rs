//! The session API over HTTP with reqwest (adapter layer): a remote proxy that behaves exactly
//! like the service it talks to, mapping HTTP statuses and error bodies back to API errors.

mod bus;
mod insight;
mod knowledge;
mod review;
mod secrets;
mod sources;
mod sse;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::{Method, RequestBuilder, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use aether_domain::{Code, Error, Reason, Result};
use aether_ports::*;

/// How a call's bearer token is chosen.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// The built-in dev form `<tenant>:<principal>`, from the call's principal.
    FromPrincipal,
    /// One token for every call.
    Fixed(String),
    /// A token per principal name (several identities against a static-token server).
    PerPrincipal(HashMap<String, String>),
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoint: String,
    pub tokens: TokenSource,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The W3C `traceparent` of the current span, sent with each request so the server's
    /// spans join the caller's trace; telemetry provides it (this adapter knows no exporter).
    pub traceparent: Option<fn() -> Option<String>>,
    /// Told of every request: its route, status (0 when no reply came) and latency.
    pub observe: Option<RequestObserver>,
}

/// Receives each request's route (ids replaced), status (0: no reply) and latency.
#[derive(Clone)]
pub struct RequestObserver(pub std::sync::Arc<ObserveRequest>);

/// What a [`RequestObserver`] calls: route, status, latency.
pub type ObserveRequest = dyn Fn(&str, u16, Duration) + Send + Sync;

impl std::fmt::Debug for RequestObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestObserver")
    }
}

impl ClientConfig {
    pub fn new(endpoint: impl Into<String>, tokens: TokenSource) -> Self {
        ClientConfig {
            endpoint: endpoint.into(),
            tokens,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            traceparent: None,
            observe: None,
        }
    }
}

#[derive(Clone)]
pub struct HttpClient {
    http: reqwest::Client,
    base: String,
    tokens: TokenSource,
    traceparent: Option<fn() -> Option<String>>,
    observe: Option<RequestObserver>,
}

/// Everything but unreserved characters is escaped in a path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b':');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

impl HttpClient {
    /// Sends a read and decodes its headers: the entry served and the range of a partial reply.
    async fn start_read(
        &self,
        ctx: &Ctx,
        id: &str,
        req: ReadFileRequest,
    ) -> Result<(reqwest::Response, Entry, Option<(u64, u64)>)> {
        let mut rb = self
            .request(ctx, Method::GET, &Self::session_path(id, "/files"))?
            .query(&[("path", &req.path)]);
        if let Some(r) = req.range {
            let spec = match r {
                ByteRange::From {
                    start,
                    end_inclusive: Some(end),
                } => format!("bytes={start}-{end}"),
                ByteRange::From {
                    start,
                    end_inclusive: None,
                } => format!("bytes={start}-"),
                ByteRange::Suffix(n) => format!("bytes=-{n}"),
            };
            rb = rb.header(header::RANGE, spec);
        }
        let resp = self.send(rb).await?;
        let entry_raw = resp
            .headers()
            .get("x-aether-entry")
            .and_then(|v| {
                base64::engine::general_purpose::STANDARD
                    .decode(v.as_bytes())
                    .ok()
            })
            .ok_or_else(|| Error::internal("file reply lacks the X-Aether-Entry header"))?;
        let entry: Entry = serde_json::from_slice(&entry_raw)
            .map_err(|e| Error::internal(format!("unreadable X-Aether-Entry: {e}")))?;
        let range = if resp.status() == StatusCode::PARTIAL_CONTENT {
            let cr = resp
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Some(
                parse_content_range(&cr)
                    .ok_or_else(|| Error::internal(format!("unreadable Content-Range {cr:?}")))?,
            )
        } else {
            None
        };
        Ok((resp, entry, range))
    }

    pub fn new(config: ClientConfig) -> Result<Self> {
        let base = config.endpoint.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::invalid(format!(
                "endpoint {base:?} must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| Error::internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(HttpClient {
            http,
            base,
            tokens: config.tokens,
            traceparent: config.traceparent,
            observe: config.observe,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.base
    }

    fn token(&self, ctx: &Ctx) -> Result<String> {
        match &self.tokens {
            TokenSource::FromPrincipal => {
                Ok(format!("{}:{}", ctx.principal.tenant, ctx.principal.name))
            }
            TokenSource::Fixed(t) => Ok(t.clone()),
            TokenSource::PerPrincipal(map) => {
                map.get(&ctx.principal.name).cloned().ok_or_else(|| {
                    Error::unauthenticated(format!(
                        "no token configured for principal {}",
                        ctx.principal.name
                    ))
                })
            }
        }
    }

    fn request(&self, ctx: &Ctx, method: Method, path: &str) -> Result<RequestBuilder> {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token(ctx)?);
        if let Some(key) = &ctx.idempotency_key {
            rb = rb.header("Idempotency-Key", key);
        }
        Ok(rb)
    }

    async fn send(&self, rb: RequestBuilder) -> Result<reqwest::Response> {
        use tracing::Instrument;
        let mut req = rb.build().map_err(|e| transport_error(&self.base, e))?;
        let route = format!("{} {}", req.method(), route_of(req.url().path()));
        let span = tracing::info_span!(
            "http.client",
            otel.name = %route,
            otel.kind = "client",
            http.response.status_code = tracing::field::Empty,
        );
        if let Some(tp) = self.traceparent.and_then(|f| span.in_scope(f))
            && let Ok(v) = header::HeaderValue::from_str(&tp)
        {
            req.headers_mut().insert("traceparent", v);
        }
        let start = std::time::Instant::now();
        let sent = self.http.execute(req).instrument(span.clone()).await;
        let status = sent.as_ref().map_or(0, |r| r.status().as_u16());
        if let Some(o) = &self.observe {
            (o.0)(&route, status, start.elapsed());
        }
        let resp = sent.map_err(|e| transport_error(&self.base, e))?;
        span.record("http.response.status_code", status);
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(error_from_response(resp).await)
        }
    }

    async fn json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T> {
        let resp = self.send(rb).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&self.base, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::internal(format!("server sent an unreadable reply: {e}")))
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        ctx: &Ctx,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.json(self.request(ctx, Method::POST, path)?.json(body))
            .await
    }

    async fn post_unit<B: Serialize>(&self, ctx: &Ctx, path: &str, body: &B) -> Result<()> {
        self.send(self.request(ctx, Method::POST, path)?.json(body))
            .await
            .map(|_| ())
    }

    async fn get<T: DeserializeOwned>(
        &self,
        ctx: &Ctx,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T> {
        self.json(self.request(ctx, Method::GET, path)?.query(query))
            .await
    }

    fn session_path(id: &str, rest: &str) -> String {
        format!("/v1/sessions/{}{rest}", seg(id))
    }
}

/// A request path with its ids replaced by placeholders: spans are named by route, never by
/// the session, source or file they concern.
fn route_of(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut previous = "";
    for segment in path.split('/').skip(1) {
        out.push('/');
        let named = match previous {
            "sessions" | "sources" | "approvals" | "annotations" | "jobs" | "secrets" => true,
            // Keys, except the cache's own verbs.
            "cache" => !matches!(
                segment,
                "keys" | "stats" | "batch-get" | "batch-set" | "batch-delete" | "delete-by-prefix"
            ),
            _ => false,
        };
        if named {
            // `/v1/sessions/{id}:link` keeps its verb.
            match segment.find(':') {
                Some(i) => {
                    out.push_str("{id}");
                    out.push_str(&segment[i..]);
                }
                None => out.push_str("{id}"),
            }
        } else {
            out.push_str(segment);
        }
        previous = segment;
    }
    out
}

fn transport_error(base: &str, e: reqwest::Error) -> Error {
    if e.is_timeout() {
        Error::unavailable(format!("request to {base} timed out: {e}"))
    } else if e.is_connect() {
        Error::unavailable(format!("cannot connect to {base}: {e}"))
    } else {
        Error::unavailable(format!("request to {base} failed: {e}"))
    }
}

/// HTTP status (and the SPEC error body) back to an API error: the one mapping of this edge.
async fn error_from_response(resp: reqwest::Response) -> Error {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let err = &body["error"];
    let code = err["status"]
        .as_str()
        .and_then(Code::parse)
        .unwrap_or_else(|| code_of_status(status));
    let message = err["message"]
        .as_str()
        .map_or_else(|| format!("server answered {status}"), str::to_owned);
    let mut e = Error::new(code, message);
    e.retry_after_secs = retry_after;
    if let Some(detail) = err["details"].as_array().and_then(|d| d.first()) {
        e.reason = detail["reason"].as_str().and_then(Reason::parse);
        e.current_hash = detail["metadata"]["currentHash"]
            .as_str()
            .map(str::to_owned);
        e.resource_size = detail["metadata"]["size"]
            .as_str()
            .and_then(|s| s.parse().ok());
    }
    e
}

fn code_of_status(s: StatusCode) -> Code {
    match s.as_u16() {
        400 | 405 | 413 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 => Code::Aborted,
        416 => Code::OutOfRange,
        429 => Code::ResourceExhausted,
        502..=504 => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// A manifest page as the server sends it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestReply {
    generation: u64,
    entries: Vec<Entry>,
    next_page_token: Option<String>,
}

fn page_of<T: DeserializeOwned>(mut v: serde_json::Value, plural: &str) -> Result<Page<T>> {
    let items = serde_json::from_value(v[plural].take())
        .map_err(|e| Error::internal(format!("server sent unreadable {plural}: {e}")))?;
    let next_page_token = v["nextPageToken"].as_str().map(str::to_owned);
    Ok(Page {
        items,
        next_page_token,
    })
}

fn page_query(p: &PageRequest, q: &mut Vec<(&'static str, String)>) {
    if let Some(s) = p.page_size {
        q.push(("pageSize", s.to_string()));
    }
    if let Some(t) = &p.page_token {
        q.push(("pageToken", t.clone()));
    }
}

impl SessionsApi for HttpClient {
    async fn create_session(&self, ctx: &Ctx, req: CreateSessionRequest) -> Result<Session> {
        self.post(ctx, "/v1/sessions", &req).await
    }

    async fn list_sessions(&self, ctx: &Ctx, req: ListSessionsRequest) -> Result<Page<Session>> {
        let mut q = Vec::new();
        if let Some(s) = req.status {
            q.push(("status", s.as_str().to_owned()));
        }
        if let Some(t) = req.tag {
            q.push(("tag", t));
        }
        if let Some(s) = req.source_id {
            q.push(("sourceId", s));
        }
        page_query(&req.page, &mut q);
        page_of(self.get(ctx, "/v1/sessions", &q).await?, "sessions")
    }

    async fn get_session(&self, ctx: &Ctx, id: &str) -> Result<Session> {
        self.get(ctx, &Self::session_path(id, ""), &[]).await
    }

    async fn delete_session(&self, ctx: &Ctx, id: &str) -> Result<()> {
        self.send(self.request(ctx, Method::DELETE, &Self::session_path(id, ""))?)
            .await
            .map(|_| ())
    }

    async fn archive_session(&self, ctx: &Ctx, id: &str) -> Result<Session> {
        self.post(
            ctx,
            &Self::session_path(id, ":archive"),
            &serde_json::json!({}),
        )
        .await
    }

    async fn reactivate_session(&self, ctx: &Ctx, id: &str) -> Result<Session> {
        self.post(
            ctx,
            &Self::session_path(id, ":reactivate"),
            &serde_json::json!({}),
        )
        .await
    }

    async fn fork_session(&self, ctx: &Ctx, id: &str, req: ForkSessionRequest) -> Result<Session> {
        self.post(ctx, &Self::session_path(id, "/fork"), &req).await
    }

    async fn create_checkpoint(
        &self,
        ctx: &Ctx,
        id: &str,
        req: CreateCheckpointRequest,
    ) -> Result<Checkpoint> {
        self.post(ctx, &Self::session_path(id, "/checkpoints"), &req)
            .await
    }

    async fn list_checkpoints(
        &self,
        ctx: &Ctx,
        id: &str,
        page: PageRequest,
    ) -> Result<Page<Checkpoint>> {
        let mut q = Vec::new();
        page_query(&page, &mut q);
        page_of(
            self.get(ctx, &Self::session_path(id, "/checkpoints"), &q)
                .await?,
            "checkpoints",
        )
    }

    async fn restore_checkpoint(
        &self,
        ctx: &Ctx,
        id: &str,
        req: RestoreRequest,
    ) -> Result<Session> {
        self.post(ctx, &Self::session_path(id, "/restore"), &req)
            .await
    }
}

impl FilesystemApi for HttpClient {
    async fn manifest(&self, ctx: &Ctx, id: &str, req: ManifestRequest) -> Result<Manifest> {
        let mut q = Vec::new();
        if let Some(p) = req.path_prefix {
            q.push(("pathPrefix", p));
        }
        if let Some(r) = req.recursive {
            q.push(("recursive", r.to_string()));
        }
        if let Some(c) = req.include_cas_extents {
            q.push(("includeCasExtents", c.to_string()));
        }
        page_query(&req.page, &mut q);
        // Read straight into entries, not through a JSON tree: a mount reads listings of
        // thousands of entries on a cold walk, and the tree cost a second allocation of each.
        let reply: ManifestReply = self
            .get(ctx, &Self::session_path(id, "/manifest"), &q)
            .await?;
        Ok(Manifest {
            entries: Page {
                items: reply.entries,
                next_page_token: reply.next_page_token,
            },
            generation: reply.generation,
        })
    }

    async fn mkdir(&self, ctx: &Ctx, id: &str, req: MkdirRequest) -> Result<Entry> {
        self.post(ctx, &Self::session_path(id, "/dirs"), &req).await
    }

    async fn rmdir(&self, ctx: &Ctx, id: &str, req: RmdirRequest) -> Result<()> {
        let q = [("path", req.path), ("recursive", req.recursive.to_string())];
        self.send(
            self.request(ctx, Method::DELETE, &Self::session_path(id, "/dirs"))?
                .query(&q),
        )
        .await
        .map(|_| ())
    }

    async fn delete_file(&self, ctx: &Ctx, id: &str, req: DeleteFileRequest) -> Result<()> {
        let mut q = vec![("path", req.path)];
        if let Some(h) = req.expected_hash {
            q.push(("expectedHash", h));
        }
        self.send(
            self.request(ctx, Method::DELETE, &Self::session_path(id, "/files"))?
                .query(&q),
        )
        .await
        .map(|_| ())
    }

    async fn rename(&self, ctx: &Ctx, id: &str, req: RenameRequest) -> Result<()> {
        self.post_unit(ctx, &Self::session_path(id, "/rename"), &req)
            .await
    }

    async fn link(&self, ctx: &Ctx, id: &str, req: LinkRequest) -> Result<Entry> {
        self.post(ctx, &Self::session_path(id, ":link"), &req).await
    }

    async fn unlink(&self, ctx: &Ctx, id: &str, req: PathRequest) -> Result<()> {
        self.post_unit(ctx, &Self::session_path(id, ":unlink"), &req)
            .await
    }

    async fn symlink(&self, ctx: &Ctx, id: &str, req: SymlinkRequest) -> Result<Entry> {
        self.post(ctx, &Self::session_path(id, "/symlinks"), &req)
            .await
    }

    async fn read_symlink(&self, ctx: &Ctx, id: &str, path: &str) -> Result<SymlinkTarget> {
        self.get(
            ctx,
            &Self::session_path(id, "/readSymlink"),
            &[("path", path.to_owned())],
        )
        .await
    }

    async fn set_xattr(&self, ctx: &Ctx, id: &str, req: SetXattrRequest) -> Result<()> {
        self.post_unit(ctx, &Self::session_path(id, ":setXattr"), &req)
            .await
    }

    async fn get_xattr(&self, ctx: &Ctx, id: &str, req: XattrRequest) -> Result<XattrValue> {
        self.post(ctx, &Self::session_path(id, ":getXattr"), &req)
            .await
    }

    async fn list_xattrs(&self, ctx: &Ctx, id: &str, req: PathRequest) -> Result<XattrNames> {
        self.post(ctx, &Self::session_path(id, ":listXattrs"), &req)
            .await
    }

    async fn remove_xattr(&self, ctx: &Ctx, id: &str, req: XattrRequest) -> Result<()> {
        self.post_unit(ctx, &Self::session_path(id, ":removeXattr"), &req)
            .await
    }

    async fn set_attributes(
        &self,
        ctx: &Ctx,
        id: &str,
        req: SetAttributesRequest,
    ) -> Result<Entry> {
        self.post(ctx, &Self::session_path(id, ":setAttributes"), &req)
            .await
    }

    async fn mknod(&self, ctx: &Ctx, id: &str, req: MknodRequest) -> Result<Entry> {
        self.post(ctx, &Self::session_path(id, ":mknod"), &req)
            .await
    }

    async fn batch(&self, ctx: &Ctx, id: &str, req: BatchRequest) -> Result<BatchResponse> {
        self.post(ctx, &Self::session_path(id, "/batch"), &req)
            .await
    }
}

impl ContentApi for HttpClient {
    async fn read_file(&self, ctx: &Ctx, id: &str, req: ReadFileRequest) -> Result<FileContent> {
        let (resp, entry, range) = self.start_read(ctx, id, req).await?;
        let data: Bytes = resp
            .bytes()
            .await
            .map_err(|e| transport_error(&self.base, e))?;
        Ok(FileContent { entry, data, range })
    }

    async fn read_file_chunks(
        &self,
        ctx: &Ctx,
        id: &str,
        req: ReadFileRequest,
    ) -> Result<FileChunks> {
        let (resp, entry, range) = self.start_read(ctx, id, req).await?;
        let base = self.base.clone();
        let chunks =
            futures::StreamExt::map(resp.bytes_stream(), move |c: reqwest::Result<Bytes>| {
                c.map_err(|e| transport_error(&base, e))
            });
        Ok(FileChunks {
            entry,
            range,
            chunks: Box::pin(chunks),
        })
    }

    async fn write_file(&self, ctx: &Ctx, id: &str, req: WriteFileRequest) -> Result<Entry> {
        let mut q = vec![("path", req.path), ("parents", req.parents.to_string())];
        if let Some(m) = req.mode {
            q.push(("mode", m.to_string()));
        }
        if let Some(h) = req.expected_hash {
            q.push(("expectedHash", h));
        }
        let rb = self
            .request(ctx, Method::PUT, &Self::session_path(id, "/files"))?
            .query(&q);
        let rb = match req.data {
            FileBody::Bytes(b) => rb.body(b),
            FileBody::Stream { len, chunks } => {
                let rb = match len {
                    Some(n) => rb.header(header::CONTENT_LENGTH, n),
                    None => rb,
                };
                rb.body(reqwest::Body::wrap_stream(chunks))
            }
        };
        self.json(rb).await
    }

    async fn patch_segments(
        &self,
        ctx: &Ctx,
        id: &str,
        req: PatchSegmentsRequest,
    ) -> Result<Entry> {
        self.post(ctx, &Self::session_path(id, "/patchSegments"), &req)
            .await
    }
}

/// `bytes a-b/size` → `[a, b+1)`.
fn parse_content_range(raw: &str) -> Option<(u64, u64)> {
    let spec = raw.strip_prefix("bytes ")?;
    let (range, _) = spec.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.parse().ok()?, b.parse::<u64>().ok()? + 1))
}

impl EventsApi for HttpClient {
    async fn list_events(
        &self,
        ctx: &Ctx,
        id: &str,
        req: ListEventsRequest,
    ) -> Result<Page<Event>> {
        let mut q = Vec::new();
        if let Some(a) = req.after_sequence {
            q.push(("afterSequence", a.to_string()));
        }
        if let Some(t) = req.since {
            q.push(("since", t.to_string()));
        }
        if let Some(t) = req.until {
            q.push(("until", t.to_string()));
        }
        if !req.types.is_empty() {
            q.push(("types", req.types.join(",")));
        }
        page_query(&req.page, &mut q);
        page_of(
            self.get(ctx, &Self::session_path(id, "/events"), &q)
                .await?,
            "events",
        )
    }

    async fn follow_events(&self, ctx: &Ctx, id: &str, after_sequence: u64) -> Result<EventStream> {
        let rb = self
            .request(ctx, Method::GET, &Self::session_path(id, "/events"))?
            .query(&[
                ("follow", "true".to_owned()),
                ("afterSequence", after_sequence.to_string()),
            ])
            .header(header::ACCEPT, "text/event-stream")
            .timeout(Duration::from_secs(365 * 24 * 3600));
        let resp = self.send(rb).await?;
        Ok(sse::events(resp))
    }
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn spans_are_named_by_route_not_by_id() {
        for (path, route) in [
            ("/v1/sessions", "/v1/sessions"),
            ("/v1/sessions/sess_1/files", "/v1/sessions/{id}/files"),
            ("/v1/sessions/sess_1:link", "/v1/sessions/{id}:link"),
            (
                "/v1/sessions/sess_1/cache/secret-key",
                "/v1/sessions/{id}/cache/{id}",
            ),
            (
                "/v1/sessions/sess_1/cache/stats",
                "/v1/sessions/{id}/cache/stats",
            ),
            ("/v1/sources/src_1/jobs/job_1", "/v1/sources/{id}/jobs/{id}"),
        ] {
            assert_eq!(route_of(path), route, "{path}");
        }
    }
}
