//! Health, analytics, usage and CAS metrics: health reports kept per session, counters kept by
//! the commit path (writes) and by reads (flushed in batches), a tenant's footprint computed
//! from its trees, and the blob store's figures.

use std::collections::HashMap;
use std::sync::Mutex;

use aether_domain::{Error, Result, Scope, SessionId, Timestamp};
use aether_ports::store::{BlobStore, Environment, InsightStore, MetadataStore};
use aether_ports::*;

use crate::Service;

const STATUSES: [&str; 3] = ["STATUS_UNKNOWN", "STATUS_PASSING", "STATUS_FAILING"];
const MAX_CHECKS: usize = 100;
const DAY_NANOS: i64 = 24 * 3600 * 1_000_000_000;

/// Bytes served per session since the last flush.
#[derive(Default)]
pub(crate) struct ReadCounters(Mutex<HashMap<SessionId, u64>>);

/// Sessions by status and the content store's size, over every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentGauges {
    pub sessions: Vec<(aether_domain::SessionStatus, u64)>,
    pub blob_count: u64,
    pub blob_bytes: u64,
}

fn check_status(field: &str, s: &str) -> Result<()> {
    if STATUSES.contains(&s) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field} {s:?} is not one of {}",
            STATUSES.join(", ")
        )))
    }
}

fn check_message(field: &str, m: &Option<String>) -> Result<()> {
    match m {
        Some(m) if m.len() > 4096 => Err(Error::invalid(format!(
            "{field} is {} bytes; the limit is 4096",
            m.len()
        ))),
        _ => Ok(()),
    }
}

impl<M, B, E> Service<M, B, E> {
    pub(crate) fn count_read(&self, session: &SessionId, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut map = self.inner.reads.0.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(session.clone()).or_default() += bytes;
    }
}

impl<M: MetadataStore + InsightStore, B: BlobStore, E: Environment> Service<M, B, E> {
    /// Writes the read counters gathered since the last call to the store; the app calls it
    /// now and then and at shutdown. Counts are kept if the store fails, for the next call.
    /// Deployment-wide figures for the server's gauges (no tenant's view: operators only).
    pub async fn gauges(&self) -> Result<DeploymentGauges> {
        let (blob_count, blob_bytes) = self.inner.blobs.usage().await?;
        Ok(DeploymentGauges {
            sessions: self.inner.meta.session_counts().await?,
            blob_count,
            blob_bytes,
        })
    }

    pub async fn flush_usage(&self) -> Result<()> {
        let pending: Vec<(SessionId, u64)> = {
            let mut map = self.inner.reads.0.lock().unwrap_or_else(|p| p.into_inner());
            map.drain().collect()
        };
        if pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.inner.meta.add_bytes_read(pending.clone()).await {
            let mut map = self.inner.reads.0.lock().unwrap_or_else(|p| p.into_inner());
            for (s, n) in pending {
                *map.entry(s).or_default() += n;
            }
            return Err(e);
        }
        Ok(())
    }

    async fn current_health(&self, session: &SessionId) -> Result<SessionHealth> {
        Ok(self
            .inner
            .meta
            .health(session)
            .await?
            .unwrap_or_else(|| SessionHealth {
                session_id: session.as_str().to_owned(),
                status: "STATUS_UNKNOWN".to_owned(),
                message: None,
                checks: Vec::new(),
                test_results: None,
                reported_by: None,
                reported_at: None,
            }))
    }

    async fn store_health(
        &self,
        ctx: &Ctx,
        rec_id: &SessionId,
        health: SessionHealth,
        kind: &str,
        generation: u64,
    ) -> Result<SessionHealth> {
        self.inner.meta.put_health(rec_id, &health).await?;
        let mut event = self.event(ctx, kind, generation);
        event.related_id = Some(health.status.clone());
        self.inner.meta.append_event(rec_id, event).await?;
        self.notify(rec_id);
        Ok(health)
    }
}

impl<M: MetadataStore + InsightStore, B: BlobStore, E: Environment> InsightApi
    for Service<M, B, E>
{
    async fn get_health(&self, ctx: &Ctx, session_id: &str) -> Result<SessionHealth> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        self.current_health(&rec.id).await
    }

    async fn report_health(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ReportHealthRequest,
    ) -> Result<SessionHealth> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        check_status("status", &req.status)?;
        check_message("message", &req.message)?;
        if req.checks.len() > MAX_CHECKS {
            return Err(Error::invalid(format!(
                "{} checks; the limit is {MAX_CHECKS}",
                req.checks.len()
            )));
        }
        for c in &req.checks {
            if c.name.is_empty() || c.name.len() > 128 {
                return Err(Error::invalid(format!(
                    "check name {:?} must be 1-128 bytes",
                    c.name
                )));
            }
            check_status(&format!("status of check {}", c.name), &c.status)?;
            check_message(&format!("message of check {}", c.name), &c.message)?;
        }
        let before = self.current_health(&rec.id).await?;
        let health = SessionHealth {
            status: req.status,
            message: req.message,
            checks: req.checks,
            reported_by: Some(ctx.principal.name.clone()),
            reported_at: Some(self.inner.env.now()),
            ..before
        };
        self.store_health(ctx, &rec.id, health, "HEALTH_REPORTED", rec.generation)
            .await
    }

    async fn report_test_results(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: TestResultsRequest,
    ) -> Result<SessionHealth> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        if let Some(s) = &req.suite
            && (s.is_empty() || s.len() > 128)
        {
            return Err(Error::invalid("suite must be 1-128 bytes"));
        }
        let now = self.inner.env.now();
        let before = self.current_health(&rec.id).await?;
        let status = if req.failed > 0 {
            "STATUS_FAILING"
        } else if req.passed > 0 {
            "STATUS_PASSING"
        } else {
            "STATUS_UNKNOWN"
        };
        let health = SessionHealth {
            status: status.to_owned(),
            test_results: Some(TestResults {
                suite: req.suite,
                passed: req.passed,
                failed: req.failed,
                skipped: req.skipped,
                duration_ms: req.duration_ms,
                reported_at: now,
            }),
            reported_by: Some(ctx.principal.name.clone()),
            reported_at: Some(now),
            ..before
        };
        self.store_health(
            ctx,
            &rec.id,
            health,
            "TEST_RESULTS_REPORTED",
            rec.generation,
        )
        .await
    }

    async fn analytics(&self, ctx: &Ctx, session_id: &str) -> Result<SessionAnalytics> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        // What this server counted so far is part of the answer.
        self.flush_usage().await?;
        let stats = self.inner.meta.session_stats(&rec.id).await?;
        let time_to_first_write_ms = stats
            .first_write_at
            .map(|t| ((t.nanos() - rec.created_at.nanos()).max(0) / 1_000_000) as u64);
        Ok(SessionAnalytics {
            session_id: rec.id.as_str().to_owned(),
            writes: stats.writes,
            bytes_written: stats.bytes_written,
            bytes_read: stats.bytes_read,
            checkpoints: stats.checkpoints,
            restores: stats.restores,
            first_write_at: stats.first_write_at,
            time_to_first_write_ms,
        })
    }

    async fn usage(&self, ctx: &Ctx, req: UsageRequest) -> Result<Usage> {
        ctx.principal.require(Scope::UsageRead)?;
        let now = self.inner.env.now();
        let until = req.until.unwrap_or(now).min(now);
        let since = req
            .since
            .unwrap_or(Timestamp::from_nanos(until.nanos() - 30 * DAY_NANOS));
        if since >= until {
            return Err(Error::invalid(format!(
                "since ({since}) must be before until ({until})"
            )));
        }
        self.flush_usage().await?;
        let foot = self
            .inner
            .meta
            .tenant_footprint(&ctx.principal.tenant)
            .await?;
        let nanos: i128 = foot
            .sessions_created
            .iter()
            .map(|c| i128::from((until.nanos() - c.nanos().max(since.nanos())).max(0)))
            .sum();
        Ok(Usage {
            tenant_id: ctx.principal.tenant.as_str().to_owned(),
            since,
            until,
            session_hours: nanos as f64 / 3.6e12,
            sessions: foot.sessions_created.len() as u64,
            stored_bytes: foot.stored_bytes,
            egress_bytes: foot.egress_bytes,
        })
    }

    async fn cas_metrics(&self, ctx: &Ctx) -> Result<CasMetrics> {
        ctx.principal.require(Scope::UsageRead)?;
        let (blob_count, blob_bytes) = self.inner.blobs.usage().await?;
        let referenced_blobs = self
            .inner
            .meta
            .refcount_histogram()
            .await?
            .iter()
            .map(|(_, n)| n)
            .sum();
        Ok(CasMetrics {
            blob_count,
            blob_bytes,
            referenced_blobs,
        })
    }

    async fn cas_refcounts(&self, ctx: &Ctx) -> Result<CasRefcounts> {
        ctx.principal.require(Scope::UsageRead)?;
        Ok(CasRefcounts {
            buckets: self
                .inner
                .meta
                .refcount_histogram()
                .await?
                .into_iter()
                .map(|(refs, blobs)| RefcountBucket { refs, blobs })
                .collect(),
        })
    }
}
