//! `ReviewApi` over HTTP: commits, approvals, annotations and review requests.

use reqwest::Method;

use aether_ports::*;

use crate::{HttpClient, page_of, page_query, seg};

impl ReviewApi for HttpClient {
    async fn commit(&self, ctx: &Ctx, id: &str, req: CommitRequest) -> Result<Commit> {
        self.post(ctx, &Self::session_path(id, "/commit"), &req)
            .await
    }

    async fn list_commits(&self, ctx: &Ctx, id: &str, page: PageRequest) -> Result<Page<Commit>> {
        let mut q = Vec::new();
        page_query(&page, &mut q);
        page_of(
            self.get(ctx, &Self::session_path(id, "/commits"), &q)
                .await?,
            "commits",
        )
    }

    async fn request_approval(
        &self,
        ctx: &Ctx,
        id: &str,
        req: RequestApprovalRequest,
    ) -> Result<Approval> {
        self.post(ctx, &Self::session_path(id, "/request-approval"), &req)
            .await
    }

    async fn grant_approval(
        &self,
        ctx: &Ctx,
        id: &str,
        approval_id: &str,
        req: DecideApprovalRequest,
    ) -> Result<Approval> {
        let path = format!("/approvals/{}/grant", seg(approval_id));
        self.post(ctx, &Self::session_path(id, &path), &req).await
    }

    async fn deny_approval(
        &self,
        ctx: &Ctx,
        id: &str,
        approval_id: &str,
        req: DecideApprovalRequest,
    ) -> Result<Approval> {
        let path = format!("/approvals/{}/deny", seg(approval_id));
        self.post(ctx, &Self::session_path(id, &path), &req).await
    }

    async fn list_approvals(
        &self,
        ctx: &Ctx,
        id: &str,
        page: PageRequest,
    ) -> Result<Page<Approval>> {
        let mut q = Vec::new();
        page_query(&page, &mut q);
        page_of(
            self.get(ctx, &Self::session_path(id, "/approvals"), &q)
                .await?,
            "approvals",
        )
    }

    async fn create_annotation(
        &self,
        ctx: &Ctx,
        id: &str,
        req: CreateAnnotationRequest,
    ) -> Result<Annotation> {
        self.post(ctx, &Self::session_path(id, "/annotations"), &req)
            .await
    }

    async fn list_annotations(
        &self,
        ctx: &Ctx,
        id: &str,
        req: ListAnnotationsRequest,
    ) -> Result<Page<Annotation>> {
        let mut q = Vec::new();
        if let Some(s) = req.status {
            q.push(("status", s));
        }
        page_query(&req.page, &mut q);
        page_of(
            self.get(ctx, &Self::session_path(id, "/annotations"), &q)
                .await?,
            "annotations",
        )
    }

    async fn update_annotation(
        &self,
        ctx: &Ctx,
        id: &str,
        annotation_id: &str,
        req: UpdateAnnotationRequest,
    ) -> Result<Annotation> {
        let path = format!("/annotations/{}", seg(annotation_id));
        let rb = self
            .request(ctx, Method::PATCH, &Self::session_path(id, &path))?
            .json(&req);
        self.json(rb).await
    }

    async fn request_review(
        &self,
        ctx: &Ctx,
        id: &str,
        req: RequestReviewRequest,
    ) -> Result<Session> {
        self.post(ctx, &Self::session_path(id, "/request-review"), &req)
            .await
    }
}
