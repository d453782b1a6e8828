//! Per-tenant token buckets: a tenant over its rate gets 429 `RESOURCE_EXHAUSTED` with
//! `Retry-After`, and one busy tenant cannot starve the others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use aether_domain::{Code, Error, Result, TenantId};

pub(crate) struct TenantLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// Buckets idle long enough to be full again are dropped past this many tenants.
const MAX_TRACKED: usize = 100_000;

impl TenantLimiter {
    pub(crate) fn new(per_sec: u32, burst: u32) -> Self {
        TenantLimiter {
            rate: f64::from(per_sec),
            burst: f64::from(burst.max(per_sec).max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request's token, or says how long to wait.
    pub(crate) fn admit(&self, tenant: &TenantId) -> Result<()> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > MAX_TRACKED {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.refilled).as_secs_f64() * rate < burst
            });
        }
        let b = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.refilled).as_secs_f64() * self.rate).min(self.burst);
        b.refilled = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - b.tokens) / self.rate).ceil().max(1.0) as u64;
        let mut e = Error::new(
            Code::ResourceExhausted,
            format!(
                "tenant {tenant} exceeded its limit of {} requests per second; retry after {wait} s",
                self.rate
            ),
        );
        e.retry_after_secs = Some(wait);
        Err(e)
    }
}
