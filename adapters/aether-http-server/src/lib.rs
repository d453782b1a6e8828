//! Exposes any session API implementation as `/v1` over HTTP with axum (adapter layer): auth,
//! the SPEC's error body, strict input extraction, content streaming and the SSE changefeed.

mod auth;
mod error;
mod extract;
mod openapi;
mod ratelimit;
mod routes;

use std::sync::Arc;

pub use auth::{AuthMode, TokenTable};
pub use error::HttpError;
pub use routes::router;

#[doc(hidden)]
pub use routes::documented_operations;

/// Transport limits with safe defaults.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest JSON request body.
    pub max_json_bytes: usize,
    /// Largest raw file body of `PUT .../files`.
    pub max_file_bytes: usize,
    /// Sustained requests per second per tenant; 0 turns the limit off.
    pub tenant_requests_per_sec: u32,
    /// Requests a tenant may make at once above the sustained rate.
    pub tenant_burst: u32,
    /// Longest time to produce a response's head (streams may then run on).
    pub request_timeout: std::time::Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_json_bytes: 8 << 20,
            max_file_bytes: 256 << 20,
            tenant_requests_per_sec: 20_000,
            tenant_burst: 40_000,
            request_timeout: std::time::Duration::from_secs(300),
        }
    }
}

/// What the router needs besides the API.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub auth: AuthMode,
    pub limits: HttpLimits,
    /// Ends the long-lived streams when the server stops.
    pub draining: Draining,
}

/// The signal that the server is stopping. Changefeed and bus streams never end on their own,
/// and every mount follows one, so without it a graceful stop would always wait out its whole
/// grace period and then leave those connections (and the stores they hold) alive.
#[derive(Debug, Clone, Default)]
pub struct Draining(tokio_util::sync::CancellationToken);

impl Draining {
    /// Ends every stream served so far and every one asked for later.
    pub fn start(&self) {
        self.0.cancel();
    }

    /// Ends `stream` once draining starts (after the item in flight).
    pub(crate) fn bound<S: futures::Stream>(
        &self,
        stream: S,
    ) -> impl futures::Stream<Item = S::Item> + use<S> {
        use futures::StreamExt;
        stream.take_until(self.0.clone().cancelled_owned())
    }
}

#[derive(Clone)]
pub(crate) struct AppState<A> {
    pub(crate) api: A,
    pub(crate) config: Arc<HttpConfig>,
    pub(crate) limiter: Arc<ratelimit::TenantLimiter>,
}
