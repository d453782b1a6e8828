//! File content routes: ranged GET, whole-file PUT, DELETE, patchSegments.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;

use aether_domain::Error;
use aether_ports::*;

use crate::AppState;
use crate::error::HttpError;
use crate::extract::{Caller, JsonBody, Query, Segment, Upload};

type Res = Result<Response, HttpError>;

/// Header carrying the entry a read was served from (base64 of its JSON).
pub(crate) const ENTRY_HEADER: &str = "x-aether-entry";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ReadQuery {
    path: String,
}

/// Parses a single `bytes=` range; anything else is ignored as RFC 9110 allows.
fn parse_range(headers: &HeaderMap) -> Option<ByteRange> {
    let raw = headers.get(header::RANGE)?.to_str().ok()?.trim();
    let spec = raw.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (true, false) => b.parse().ok().map(ByteRange::Suffix),
        (false, true) => a.parse().ok().map(|start| ByteRange::From {
            start,
            end_inclusive: None,
        }),
        (false, false) => {
            let (start, end) = (a.parse().ok()?, b.parse().ok()?);
            (end >= start).then_some(ByteRange::From {
                start,
                end_inclusive: Some(end),
            })
        }
        (true, true) => None,
    }
}

fn etag(hash: &Option<String>) -> Option<HeaderValue> {
    hash.as_ref()
        .and_then(|h| HeaderValue::from_str(&format!("\"{h}\"")).ok())
}

pub(crate) async fn read<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<ReadQuery>,
    headers: HeaderMap,
) -> Res {
    let range = parse_range(&headers);
    let c = st
        .api
        .read_file_chunks(
            &ctx,
            &id,
            ReadFileRequest {
                path: q.path,
                range,
            },
        )
        .await?;
    let entry_json =
        serde_json::to_vec(&c.entry).map_err(|e| Error::internal(format!("encode entry: {e}")))?;
    let (start, end) = c.range.unwrap_or((0, c.entry.size));
    // A read error after the headers cuts the body short of its Content-Length, which the
    // client sees as a failed read rather than a short file.
    let mut resp = axum::body::Body::from_stream(c.chunks).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(e) = etag(&c.entry.content_hash) {
        h.insert(header::ETAG, e);
    }
    if let Ok(v) =
        HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(entry_json))
    {
        h.insert(ENTRY_HEADER, v);
    }
    if let Some((start, end)) = c.range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{}", end - 1, c.entry.size))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct WriteQuery {
    path: String,
    mode: Option<String>,
    parents: Option<bool>,
    expected_hash: Option<String>,
}

/// `mode` in a query: octal when written `0o755` or with a leading zero (`0755`), else decimal.
fn parse_mode(raw: &str) -> Result<u32, Error> {
    let bad = || {
        Error::invalid(format!(
            "mode {raw:?} is not a number (octal as 0755 or 0o755, or decimal)"
        ))
    };
    if let Some(oct) = raw.strip_prefix("0o") {
        u32::from_str_radix(oct, 8).map_err(|_| bad())
    } else if raw.len() > 1 && raw.starts_with('0') {
        u32::from_str_radix(&raw[1..], 8).map_err(|_| bad())
    } else {
        raw.parse().map_err(|_| bad())
    }
}

/// `If-Match: "<hash>"` (quotes optional); a `*` says nothing about the content.
fn if_match(headers: &HeaderMap) -> Result<Option<String>, Error> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => {
            let v = v
                .to_str()
                .map_err(|_| Error::invalid("If-Match header is not visible ASCII"))?
                .trim();
            if v == "*" {
                Ok(None)
            } else {
                Ok(Some(v.trim_matches('"').to_owned()))
            }
        }
    }
}

pub(crate) async fn write<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<WriteQuery>,
    headers: HeaderMap,
    upload: Upload,
) -> Res {
    let expected_hash = match (q.expected_hash, if_match(&headers)?) {
        (Some(a), Some(b)) if a != b => {
            return Err(Error::invalid("expectedHash and If-Match disagree").into());
        }
        (a, b) => a.or(b),
    };
    let Upload { body, limit } = upload;
    let req = WriteFileRequest {
        path: q.path,
        data: body,
        mode: q.mode.as_deref().map(parse_mode).transpose()?,
        parents: q.parents.unwrap_or(false),
        expected_hash,
    };
    let entry = st
        .api
        .write_file(&ctx, &id, req)
        .await
        .map_err(|e| limit.failure(e))?;
    let mut resp = Json(&entry).into_response();
    if let Some(e) = etag(&entry.content_hash) {
        resp.headers_mut().insert(header::ETAG, e);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DeleteQuery {
    path: String,
    expected_hash: Option<String>,
}

pub(crate) async fn delete<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    Query(q): Query<DeleteQuery>,
    headers: HeaderMap,
) -> Res {
    let expected_hash = q.expected_hash.or(if_match(&headers)?);
    st.api
        .delete_file(
            &ctx,
            &id,
            DeleteFileRequest {
                path: q.path,
                expected_hash,
            },
        )
        .await?;
    Ok(Json(serde_json::json!({})).into_response())
}

pub(crate) async fn patch<A: SessionApi>(
    State(st): State<AppState<A>>,
    Caller(ctx): Caller,
    Segment(id): Segment,
    JsonBody(req): JsonBody<PatchSegmentsRequest>,
) -> Res {
    Ok(Json(st.api.patch_segments(&ctx, &id, req).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_modes() {
        let check = |raw: &str, want: Option<ByteRange>| {
            let mut h = HeaderMap::new();
            h.insert(header::RANGE, HeaderValue::from_str(raw).unwrap());
            assert_eq!(parse_range(&h), want, "{raw}");
        };
        check(
            "bytes=0-9",
            Some(ByteRange::From {
                start: 0,
                end_inclusive: Some(9),
            }),
        );
        check(
            "bytes=5-",
            Some(ByteRange::From {
                start: 5,
                end_inclusive: None,
            }),
        );
        check("bytes=-3", Some(ByteRange::Suffix(3)));
        check("bytes=9-1", None);
        check("bytes=0-1,4-5", None);
        check("items=0-1", None);
        assert_eq!(parse_mode("0755").unwrap(), 0o755);
        assert_eq!(parse_mode("0o4755").unwrap(), 0o4755);
        assert_eq!(parse_mode("420").unwrap(), 420);
        assert!(parse_mode("rwx").is_err());
    }
}
