//! The one mapping from API errors to HTTP responses with the SPEC's error body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use aether_domain::{Code, Error, Reason};

/// An API error on its way out, optionally with a transport-specific status (405, 413).
#[derive(Debug)]
pub struct HttpError {
    pub error: Error,
    pub status: Option<StatusCode>,
}

impl From<Error> for HttpError {
    fn from(error: Error) -> Self {
        HttpError {
            error,
            status: None,
        }
    }
}

impl HttpError {
    pub(crate) fn with_status(error: Error, status: StatusCode) -> Self {
        HttpError {
            error,
            status: Some(status),
        }
    }
}

/// HTTP status of each code (SPEC §4.1); a range past the end is 416.
pub(crate) fn status_of(e: &Error) -> StatusCode {
    match e.code {
        Code::OutOfRange if e.reason == Some(Reason::RangeNotSatisfiable) => {
            StatusCode::RANGE_NOT_SATISFIABLE
        }
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let e = self.error;
        let status = self.status.unwrap_or_else(|| status_of(&e));
        if status.is_server_error() {
            tracing::error!(code = e.code.as_str(), message = %e.message, "request failed");
        }
        let mut metadata = serde_json::Map::new();
        if let Some(h) = &e.current_hash {
            metadata.insert("currentHash".into(), json!(h));
        }
        if let Some(s) = e.resource_size {
            metadata.insert("size".into(), json!(s.to_string()));
        }
        let details = match e.reason {
            Some(r) => json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": r.as_str(),
                "domain": "aetherfs.io",
                "metadata": metadata,
            }]),
            None if !metadata.is_empty() => json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "domain": "aetherfs.io",
                "metadata": metadata,
            }]),
            None => json!([]),
        };
        let body = json!({
            "error": {
                "code": status.as_u16(),
                "status": e.code.as_str(),
                "message": e.message,
                "details": details,
            }
        });
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(secs) = e.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(size) = e
            .resource_size
            .filter(|_| status == StatusCode::RANGE_NOT_SATISFIABLE)
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        resp
    }
}
