//! `SourcesApi` over HTTP: `/v1/sources/...`.

use reqwest::{Method, header};

use aether_ports::*;

use crate::{HttpClient, page_of, page_query, seg};

fn source_path(id: &str, rest: &str) -> String {
    format!("/v1/sources/{}{rest}", seg(id))
}

impl SourcesApi for HttpClient {
    async fn create_source(&self, ctx: &Ctx, req: CreateSourceRequest) -> Result<Source> {
        self.post(ctx, "/v1/sources", &req).await
    }

    async fn list_sources(&self, ctx: &Ctx, req: ListSourcesRequest) -> Result<Page<Source>> {
        let mut q = Vec::new();
        page_query(&req.page, &mut q);
        page_of(self.get(ctx, "/v1/sources", &q).await?, "sources")
    }

    async fn get_source(&self, ctx: &Ctx, id: &str) -> Result<Source> {
        self.get(ctx, &source_path(id, ""), &[]).await
    }

    async fn upload_archive(&self, ctx: &Ctx, id: &str, archive: FileBody) -> Result<Job> {
        let rb = self.request(ctx, Method::PUT, &source_path(id, "/archive"))?;
        let rb = match archive {
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

    async fn start_import(&self, ctx: &Ctx, id: &str) -> Result<Job> {
        self.post(
            ctx,
            &source_path(id, "/startImport"),
            &serde_json::json!({}),
        )
        .await
    }

    async fn refresh_source(&self, ctx: &Ctx, id: &str) -> Result<Job> {
        self.post(ctx, &source_path(id, "/refresh"), &serde_json::json!({}))
            .await
    }

    async fn promote_session(
        &self,
        ctx: &Ctx,
        id: &str,
        req: PromoteSessionRequest,
    ) -> Result<Job> {
        self.post(ctx, &source_path(id, "/promoteSession"), &req)
            .await
    }

    async fn get_job(&self, ctx: &Ctx, id: &str, job_id: &str) -> Result<Job> {
        let rest = format!("/jobs/{}", seg(job_id));
        self.get(ctx, &source_path(id, &rest), &[]).await
    }
}
