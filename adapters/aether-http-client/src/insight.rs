//! `InsightApi` over HTTP.

use aether_ports::*;

use crate::HttpClient;

impl InsightApi for HttpClient {
    async fn get_health(&self, ctx: &Ctx, id: &str) -> Result<SessionHealth> {
        self.get(ctx, &Self::session_path(id, "/health"), &[]).await
    }

    async fn report_health(
        &self,
        ctx: &Ctx,
        id: &str,
        req: ReportHealthRequest,
    ) -> Result<SessionHealth> {
        self.post(ctx, &Self::session_path(id, "/health/report"), &req)
            .await
    }

    async fn report_test_results(
        &self,
        ctx: &Ctx,
        id: &str,
        req: TestResultsRequest,
    ) -> Result<SessionHealth> {
        self.post(ctx, &Self::session_path(id, "/health:testResults"), &req)
            .await
    }

    async fn analytics(&self, ctx: &Ctx, id: &str) -> Result<SessionAnalytics> {
        self.get(ctx, &Self::session_path(id, "/analytics"), &[])
            .await
    }

    async fn usage(&self, ctx: &Ctx, req: UsageRequest) -> Result<Usage> {
        let mut q = Vec::new();
        if let Some(t) = req.since {
            q.push(("since", t.to_string()));
        }
        if let Some(t) = req.until {
            q.push(("until", t.to_string()));
        }
        self.get(ctx, "/v1/usage", &q).await
    }

    async fn cas_metrics(&self, ctx: &Ctx) -> Result<CasMetrics> {
        self.get(ctx, "/v1/metrics/cas", &[]).await
    }

    async fn cas_refcounts(&self, ctx: &Ctx) -> Result<CasRefcounts> {
        self.get(ctx, "/v1/metrics/cas/refcounts", &[]).await
    }
}
