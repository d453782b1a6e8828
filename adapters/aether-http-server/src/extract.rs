//! Request extractors that turn every malformed input into the SPEC's error body (axum's own
//! rejections answer plain text).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use bytes::Bytes;
use futures::StreamExt;
use serde::de::DeserializeOwned;

use aether_domain::Error;
use aether_ports::{Ctx, FileBody};

use crate::AppState;
use crate::error::HttpError;

/// The authenticated caller and its idempotency key.
pub(crate) struct Caller(pub(crate) Ctx);

impl<A: Send + Sync> FromRequestParts<AppState<A>> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState<A>) -> Result<Self, HttpError> {
        let auth = parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| {
                v.to_str().map_err(|_| {
                    Error::unauthenticated("Authorization header is not visible ASCII")
                })
            })
            .transpose()?;
        let principal = state.config.auth.authenticate(auth)?;
        state.limiter.admit(&principal.tenant)?;
        let key = parts
            .headers
            .get("idempotency-key")
            .map(|v| {
                v.to_str()
                    .map(str::to_owned)
                    .map_err(|_| Error::invalid("Idempotency-Key header is not visible ASCII"))
            })
            .transpose()?;
        Ok(Caller(Ctx {
            principal,
            idempotency_key: key,
        }))
    }
}

/// A single path segment (the session id, possibly with a `:verb` suffix).
pub(crate) struct Segment(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path(v) = Path::<Vec<String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::invalid(format!("invalid path parameter: {e}")))?;
        v.into_iter()
            .next()
            .map(Segment)
            .ok_or_else(|| Error::invalid("missing path parameter").into())
    }
}

/// Query parameters, strictly parsed (unknown names rejected where the type says so).
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        let raw = parts.uri.query().unwrap_or("");
        // serde_urlencoded replaces invalid UTF-8 with U+FFFD; a path must never be altered.
        for pair in raw.split('&') {
            let name = pair.split('=').next().unwrap_or_default();
            if percent_encoding::percent_decode_str(&pair.replace('+', " "))
                .decode_utf8()
                .is_err()
            {
                return Err(Error::invalid(format!(
                    "query parameter {name:?} is not valid UTF-8 after percent-decoding"
                ))
                .into());
            }
        }
        serde_urlencoded::from_str(raw)
            .map(Query)
            .map_err(|e| Error::invalid(format!("invalid query string: {e}")).into())
    }
}

fn too_large(limit: usize) -> HttpError {
    HttpError::with_status(
        Error::invalid(format!("request body exceeds the limit of {limit} bytes")),
        StatusCode::PAYLOAD_TOO_LARGE,
    )
}

/// Reads the whole body, refusing more than `limit` bytes with 413.
///
/// The body is read up to the limit before refusing, even when `Content-Length` already says
/// it is too large: answering before reading makes the server close the connection while the
/// client is still sending, and the client then sees a reset instead of the 413.
pub(crate) async fn body_bytes(req: Request, limit: usize) -> Result<Bytes, HttpError> {
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| too_large(limit))
}

/// A JSON body of at most the configured size; an empty body reads as `{}`.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned, A: Send + Sync> FromRequest<AppState<A>> for JsonBody<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &AppState<A>) -> Result<Self, HttpError> {
        let bytes = body_bytes(req, state.config.limits.max_json_bytes).await?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes)
            .map(JsonBody)
            .map_err(|e| Error::invalid(format!("invalid JSON body: {e}")).into())
    }
}

/// Bodies up to this size are read whole; larger ones stream into the blob store.
const STREAM_ABOVE: u64 = 1 << 20;

/// A raw body for file content, up to the file size limit. A large body is handed on as a
/// stream, so a 1 GiB upload costs the server a few chunks of memory, not a gigabyte.
pub(crate) struct Upload {
    pub(crate) body: FileBody,
    pub(crate) limit: BodyLimit,
}

/// Whether a streamed body went past the size limit, known only once it has been read.
pub(crate) struct BodyLimit {
    limit: usize,
    overflowed: Arc<AtomicBool>,
}

impl BodyLimit {
    /// The reply for a write that failed: 413 if the body went past the limit, else `e`.
    pub(crate) fn failure(&self, e: Error) -> HttpError {
        if self.overflowed.load(Ordering::Acquire) {
            too_large(self.limit)
        } else {
            e.into()
        }
    }
}

impl<A: Send + Sync> FromRequest<AppState<A>> for Upload {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &AppState<A>) -> Result<Self, HttpError> {
        let limit = state.config.limits.max_file_bytes;
        let overflowed = Arc::new(AtomicBool::new(false));
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n <= STREAM_ABOVE) {
            let body = body_bytes(req, limit).await?.into();
            return Ok(Upload {
                body,
                limit: BodyLimit { limit, overflowed },
            });
        }
        let flag = overflowed.clone();
        let mut seen = 0u64;
        let chunks = req.into_body().into_data_stream().map(move |chunk| {
            let chunk = chunk.map_err(|e| {
                Error::unavailable(format!("the request body could not be read: {e}"))
            })?;
            seen += chunk.len() as u64;
            if seen > limit as u64 {
                flag.store(true, Ordering::Release);
                return Err(Error::invalid(format!(
                    "request body exceeds the limit of {limit} bytes"
                )));
            }
            Ok(chunk)
        });
        Ok(Upload {
            body: FileBody::stream(declared, chunks),
            limit: BodyLimit { limit, overflowed },
        })
    }
}
