//! Review use cases: approvals bound to the generation they were requested at, the approval
//! gate on commits, commits as frozen trees, annotations anchored to content hashes, and
//! review requests.

use aether_domain::review::{
    ApprovalStatus, check_decidable, check_gate, check_labels, check_reason, check_text,
};
use aether_domain::session::Transition;
use aether_domain::{
    Action, AnnotationId, ApprovalId, CommitId, Error, Result, Scope, SessionPath,
};
use aether_ports::plan;
use aether_ports::store::{
    BlobStore, Environment, MetadataStore, ReviewStore, SessionRecord, StatusChange, TreeRef,
};
use aether_ports::*;

use crate::mutate::shard_of;
use crate::{Service, replayed_value};

/// Largest `details` object of an approval request, as JSON.
const MAX_DETAILS_BYTES: usize = 64 * 1024;

fn value_of<T: serde::Serialize>(v: &T) -> Outcome {
    serde_json::to_value(v).map_or(Outcome::Done, Outcome::Value)
}

/// An approval as seen now: pending or granted ones requested before the current generation
/// read as `STALE`.
fn approval_view(mut a: Approval, current: u64) -> Approval {
    if let Ok(stored) = ApprovalStatus::parse(&a.status) {
        a.status = stored.at(a.generation, current).as_str().to_owned();
    }
    a
}

fn page_after(token: &Option<String>, kind: &str) -> Result<Option<String>> {
    token
        .as_ref()
        .map(|t| plan::decode_token(kind, t))
        .transpose()
}

fn page_of<T>(mut items: Vec<T>, limit: usize, kind: &str, id: impl Fn(&T) -> &str) -> Page<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next_page_token = more
        .then(|| items.last().map(|i| plan::encode_token(kind, id(i))))
        .flatten();
    Page {
        items,
        next_page_token,
    }
}

fn check_comment(comment: &Option<String>) -> Result<()> {
    match comment {
        Some(c) => check_text("comment", c),
        None => Ok(()),
    }
}

impl<M: MetadataStore + ReviewStore, B: BlobStore, E: Environment> Service<M, B, E> {
    async fn decide(
        &self,
        ctx: &Ctx,
        session_id: &str,
        approval_id: &str,
        req: DecideApprovalRequest,
        verdict: ApprovalStatus,
    ) -> Result<Approval> {
        ctx.principal.require(Scope::SessionMerge)?;
        let rec = self.load(&ctx.principal, session_id).await?;
        if let Some(o) = self.replay(ctx, session_id).await? {
            return replayed_value(o);
        }
        ApprovalId::parse(approval_id)?;
        check_comment(&req.comment)?;
        let stored = self
            .inner
            .meta
            .approval(&rec.id, approval_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("approval {approval_id} not found")))?;
        check_decidable(
            approval_id,
            ApprovalStatus::parse(&stored.status)?,
            stored.generation,
            rec.generation,
            &stored.requested_by,
            &ctx.principal.name,
        )?;
        let now = self.inner.env.now();
        let decided = Approval {
            status: verdict.as_str().to_owned(),
            decided_by: Some(ctx.principal.name.clone()),
            comment: req.comment,
            decided_at: Some(now),
            ..stored
        };
        let status: StatusChange = rec
            .status
            .apply(Transition::DecideApproval)
            .ok()
            .map(|to| (rec.status, to));
        let kind = match verdict {
            ApprovalStatus::Granted => "APPROVAL_GRANTED",
            _ => "APPROVAL_DENIED",
        };
        let mut event = self.event(ctx, kind, rec.generation);
        event.related_id = Some(decided.id.clone());
        let idem = self.idempotency(ctx, value_of(&decided));
        let stored = self
            .inner
            .meta
            .decide_approval(&rec.tenant, &rec.id, &decided, status, event, idem)
            .await?;
        if !stored {
            return Err(Error::new(
                aether_domain::Code::Aborted,
                format!(
                    "approval {approval_id} or its session changed while it was being decided; \
                     list the approvals and retry"
                ),
            ));
        }
        self.notify(&rec.id);
        Ok(decided)
    }

    /// Every approval of a session (the gate reads them all; a session holds few).
    async fn all_approvals(&self, rec: &SessionRecord) -> Result<Vec<Approval>> {
        let mut all = Vec::new();
        loop {
            let after = all.last().map(|a: &Approval| a.id.clone());
            let page = self
                .inner
                .meta
                .list_approvals(&rec.id, after.as_deref(), 1000)
                .await?;
            let done = page.len() < 1000;
            all.extend(page);
            if done {
                return Ok(all);
            }
        }
    }

    /// Passes `action` through the session's approval gate; the approval it passed with.
    pub(crate) async fn gate(&self, rec: &SessionRecord, action: Action) -> Result<Option<String>> {
        let granted: Vec<Approval> = self
            .all_approvals(rec)
            .await?
            .into_iter()
            .filter(|a| a.status == ApprovalStatus::Granted.as_str())
            .collect();
        let at: Vec<u64> = granted.iter().map(|a| a.generation).collect();
        check_gate(
            action,
            &rec.approval_policy,
            &at,
            rec.generation,
            rec.id.as_str(),
        )?;
        Ok(granted
            .into_iter()
            .rev()
            .find(|a| a.generation == rec.generation)
            .map(|a| a.id))
    }
}

impl<M, B, E> ReviewApi for Service<M, B, E>
where
    M: MetadataStore + ReviewStore + aether_ports::store::SourceStore,
    B: BlobStore,
    E: Environment,
{
    async fn commit(&self, ctx: &Ctx, session_id: &str, req: CommitRequest) -> Result<Commit> {
        self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        if let Some(o) = self.replay(ctx, session_id).await? {
            return replayed_value(o);
        }
        check_text("message", &req.message)?;
        if let Some(a) = &req.author {
            check_text("author", a)?;
        }
        // No write of this server may slip between the gate and the frozen tree.
        let _guard = self.inner.write_locks[shard_of(session_id)].lock().await;
        let rec = self.load(&ctx.principal, session_id).await?;
        rec.status.check_writable()?;
        let approval_id = self.gate(&rec, Action::Commit).await?;
        let id = CommitId::from_suffix(&self.inner.env.id_suffix());
        let plain = Ctx::new(ctx.principal.clone());
        let checkpoint = self
            .create_checkpoint(
                &plain,
                session_id,
                CreateCheckpointRequest {
                    name: Some(format!("commit {id}")),
                },
            )
            .await?;
        let commit = Commit {
            id: id.as_str().to_owned(),
            session_id: rec.id.as_str().to_owned(),
            message: req.message,
            author: req.author.unwrap_or_else(|| ctx.principal.name.clone()),
            committed_by: ctx.principal.name.clone(),
            generation: rec.generation,
            checkpoint_id: checkpoint.id,
            approval_id,
            created_at: self.inner.env.now(),
        };
        let mut event = self.event(ctx, "COMMITTED", rec.generation);
        event.related_id = Some(commit.id.clone());
        let idem = self.idempotency(ctx, value_of(&commit));
        self.inner
            .meta
            .insert_commit(&rec.tenant, &rec.id, &commit, event, idem)
            .await?;
        self.notify(&rec.id);
        Ok(commit)
    }

    async fn list_commits(
        &self,
        ctx: &Ctx,
        session_id: &str,
        page: PageRequest,
    ) -> Result<Page<Commit>> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        let limit = page.size()?;
        let after = page_after(&page.page_token, "commits")?;
        let items = self
            .inner
            .meta
            .list_commits(&rec.id, after.as_deref(), limit + 1)
            .await?;
        Ok(page_of(items, limit, "commits", |c| &c.id))
    }

    async fn request_approval(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: RequestApprovalRequest,
    ) -> Result<Approval> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        if let Some(o) = self.replay(ctx, session_id).await? {
            return replayed_value(o);
        }
        check_reason(&req.reason)?;
        let details = req.details.unwrap_or_else(|| serde_json::json!({}));
        if !details.is_object() {
            return Err(Error::invalid("details must be a JSON object"));
        }
        let size = serde_json::to_vec(&details).map_or(0, |v| v.len());
        if size > MAX_DETAILS_BYTES {
            return Err(Error::invalid(format!(
                "details is {size} bytes of JSON; the limit is {MAX_DETAILS_BYTES}"
            )));
        }
        let to = rec.status.apply(Transition::RequestApproval)?;
        let approval = Approval {
            id: ApprovalId::from_suffix(&self.inner.env.id_suffix())
                .as_str()
                .to_owned(),
            session_id: rec.id.as_str().to_owned(),
            reason: req.reason,
            details,
            status: ApprovalStatus::Pending.as_str().to_owned(),
            generation: rec.generation,
            requested_by: ctx.principal.name.clone(),
            decided_by: None,
            comment: None,
            created_at: self.inner.env.now(),
            decided_at: None,
        };
        let mut event = self.event(ctx, "APPROVAL_REQUESTED", rec.generation);
        event.related_id = Some(approval.id.clone());
        let idem = self.idempotency(ctx, value_of(&approval));
        let stored = self
            .inner
            .meta
            .insert_approval(
                &rec.tenant,
                &rec.id,
                &approval,
                Some((rec.status, to)),
                event,
                idem,
            )
            .await?;
        if !stored {
            return Err(Error::new(
                aether_domain::Code::Aborted,
                format!("session {session_id} changed status concurrently; retry"),
            ));
        }
        self.notify(&rec.id);
        Ok(approval)
    }

    async fn grant_approval(
        &self,
        ctx: &Ctx,
        session_id: &str,
        approval_id: &str,
        req: DecideApprovalRequest,
    ) -> Result<Approval> {
        self.decide(ctx, session_id, approval_id, req, ApprovalStatus::Granted)
            .await
    }

    async fn deny_approval(
        &self,
        ctx: &Ctx,
        session_id: &str,
        approval_id: &str,
        req: DecideApprovalRequest,
    ) -> Result<Approval> {
        self.decide(ctx, session_id, approval_id, req, ApprovalStatus::Denied)
            .await
    }

    async fn list_approvals(
        &self,
        ctx: &Ctx,
        session_id: &str,
        page: PageRequest,
    ) -> Result<Page<Approval>> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        let limit = page.size()?;
        let after = page_after(&page.page_token, "approvals")?;
        let items = self
            .inner
            .meta
            .list_approvals(&rec.id, after.as_deref(), limit + 1)
            .await?
            .into_iter()
            .map(|a| approval_view(a, rec.generation))
            .collect();
        Ok(page_of(items, limit, "approvals", |a| &a.id))
    }

    async fn create_annotation(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: CreateAnnotationRequest,
    ) -> Result<Annotation> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        if let Some(o) = self.replay(ctx, session_id).await? {
            return replayed_value(o);
        }
        check_text("comment", &req.comment)?;
        check_labels(&req.labels)?;
        if req.path.is_none() && (req.line.is_some() || req.expected_content_hash.is_some()) {
            return Err(Error::invalid(
                "line and expectedContentHash need a path to anchor to",
            ));
        }
        if req.line == Some(0) {
            return Err(Error::invalid("line numbers start at 1"));
        }
        let content_hash = match &req.path {
            None => None,
            Some(raw) => {
                let path = SessionPath::parse(raw)?;
                let entry = self
                    .inner
                    .meta
                    .entry(
                        &TreeRef::Session {
                            tenant: rec.tenant.clone(),
                            session: rec.id.clone(),
                        },
                        &path,
                    )
                    .await?
                    .ok_or_else(|| Error::no_such_path(path.as_str()))?;
                if let Some(expected) = &req.expected_content_hash
                    && entry.content_hash.as_deref() != Some(expected.as_str())
                {
                    return Err(Error::hash_conflict(path.as_str(), entry.content_hash));
                }
                entry.content_hash
            }
        };
        let now = self.inner.env.now();
        let annotation = Annotation {
            id: AnnotationId::from_suffix(&self.inner.env.id_suffix())
                .as_str()
                .to_owned(),
            session_id: rec.id.as_str().to_owned(),
            path: req.path,
            line: req.line,
            comment: req.comment,
            labels: req.labels,
            content_hash,
            status: "OPEN".to_owned(),
            author: ctx.principal.name.clone(),
            generation: rec.generation,
            created_at: now,
            updated_at: now,
        };
        let mut event = self.event(ctx, "ANNOTATION_CREATED", rec.generation);
        event.related_id = Some(annotation.id.clone());
        event.path = annotation.path.clone();
        let idem = self.idempotency(ctx, value_of(&annotation));
        self.inner
            .meta
            .put_annotation(&rec.tenant, &rec.id, &annotation, event, idem)
            .await?;
        self.notify(&rec.id);
        Ok(annotation)
    }

    async fn list_annotations(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ListAnnotationsRequest,
    ) -> Result<Page<Annotation>> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        if let Some(s) = &req.status {
            check_annotation_status(s)?;
        }
        let limit = req.page.size()?;
        let after = page_after(&req.page.page_token, "annotations")?;
        let items = self
            .inner
            .meta
            .list_annotations(&rec.id, req.status.as_deref(), after.as_deref(), limit + 1)
            .await?;
        Ok(page_of(items, limit, "annotations", |a| &a.id))
    }

    async fn update_annotation(
        &self,
        ctx: &Ctx,
        session_id: &str,
        annotation_id: &str,
        req: UpdateAnnotationRequest,
    ) -> Result<Annotation> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        if let Some(o) = self.replay(ctx, session_id).await? {
            return replayed_value(o);
        }
        AnnotationId::parse(annotation_id)?;
        check_annotation_status(&req.status)?;
        let current = self
            .inner
            .meta
            .annotation(&rec.id, annotation_id)
            .await?
            .ok_or_else(|| Error::not_found(format!("annotation {annotation_id} not found")))?;
        if current.status == req.status {
            return Ok(current);
        }
        let updated = Annotation {
            status: req.status,
            updated_at: self.inner.env.now(),
            ..current
        };
        let kind = if updated.status == "RESOLVED" {
            "ANNOTATION_RESOLVED"
        } else {
            "ANNOTATION_REOPENED"
        };
        let mut event = self.event(ctx, kind, rec.generation);
        event.related_id = Some(updated.id.clone());
        event.path = updated.path.clone();
        let idem = self.idempotency(ctx, value_of(&updated));
        self.inner
            .meta
            .put_annotation(&rec.tenant, &rec.id, &updated, event, idem)
            .await?;
        self.notify(&rec.id);
        Ok(updated)
    }

    async fn request_review(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: RequestReviewRequest,
    ) -> Result<Session> {
        check_comment(&req.comment)?;
        self.transition(
            ctx,
            session_id,
            Transition::RequestReview,
            "REVIEW_REQUESTED",
        )
        .await
    }
}

fn check_annotation_status(s: &str) -> Result<()> {
    match s {
        "OPEN" | "RESOLVED" => Ok(()),
        other => Err(Error::invalid(format!(
            "annotation status {other:?} is not one of OPEN, RESOLVED"
        ))),
    }
}
