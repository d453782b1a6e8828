//! Session lifecycle use cases: create, list, get, delete, archive, fork, checkpoints, restore.

use std::collections::BTreeMap;

use aether_domain::session::Transition;
use aether_domain::tree::Op;
use aether_domain::{Action, CheckpointId, Entry, Error, Result, Scope, SessionId, SessionStatus};
use aether_ports::plan::{self, Planned};
use aether_ports::store::{
    BlobStore, CommitOutcome, Environment, MetadataStore, SessionFilter, TreeRef,
};
use aether_ports::*;

use crate::{Service, fingerprint, replayed, tenant_of};

fn parse_policy(raw: Option<Vec<String>>) -> Result<Vec<Action>> {
    match raw {
        None => Ok(Action::default_policy()),
        Some(list) => {
            let mut actions: Vec<Action> = list
                .iter()
                .map(|a| Action::parse(a))
                .collect::<Result<_>>()?;
            actions.sort();
            actions.dedup();
            Ok(actions)
        }
    }
}

fn validate_checkpoint_name(name: &Option<String>) -> Result<()> {
    match name {
        Some(n) if n.is_empty() || n.len() > 256 || n.chars().any(char::is_control) => Err(
            Error::invalid("checkpoint name must be 1-256 characters without control characters"),
        ),
        _ => Ok(()),
    }
}

impl<M, B, E> Service<M, B, E> {
    /// The API's view of a stored session, with this service's file-size limit announced in
    /// its capabilities.
    pub(crate) fn view(&self, rec: &aether_ports::store::SessionRecord) -> Session {
        Session {
            id: rec.id.as_str().to_owned(),
            tenant_id: rec.tenant.as_str().to_owned(),
            base_fingerprint: rec.base_fingerprint.clone(),
            source_ref: rec.source_ref.clone(),
            status: rec.status,
            tags: rec.tags.clone(),
            generation: rec.generation,
            created_at: rec.created_at,
            last_activity_at: rec.last_activity_at,
            capabilities: Capabilities {
                commit: true,
                approvals: true,
                annotations: true,
                max_file_bytes: Some(self.inner.limits.max_file_bytes),
            },
            approval_policy: rec
                .approval_policy
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect(),
        }
    }
}

impl<M: MetadataStore, B: BlobStore, E: Environment> Service<M, B, E> {
    pub(crate) async fn transition(
        &self,
        ctx: &Ctx,
        session_id: &str,
        t: Transition,
        event: &str,
    ) -> Result<Session> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        if let Some(o) = self.replay(ctx, session_id).await? {
            return replayed!(o, Session);
        }
        let to = rec.status.apply(t)?;
        let mut after = rec.clone();
        after.status = to;
        after.last_activity_at = self.inner.env.now();
        let idem = self.idempotency(ctx, Outcome::Session(self.view(&after)));
        let moved = !self
            .inner
            .meta
            .set_status(
                &rec.tenant,
                &rec.id,
                rec.status,
                to,
                self.event(ctx, event, rec.generation),
                idem,
            )
            .await?;
        if moved {
            return Err(Error::new(
                aether_domain::Code::Aborted,
                format!("session {session_id} changed status concurrently; retry"),
            ));
        }
        self.notify(&rec.id);
        Ok(self.view(&after))
    }
}

impl<M, B, E> SessionsApi for Service<M, B, E>
where
    M: MetadataStore + store::SourceStore + store::ReviewStore,
    B: BlobStore,
    E: Environment,
{
    async fn create_session(&self, ctx: &Ctx, req: CreateSessionRequest) -> Result<Session> {
        ctx.principal.require(Scope::SessionWrite)?;
        if let Some(o) = self.replay(ctx, "").await? {
            return replayed!(o, Session);
        }
        plan::validate_tags(&req.initial_tags)?;
        let policy = parse_policy(req.approval_policy)?;
        match (&req.source_ref, &req.empty) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid("give either sourceRef or empty, not both"));
            }
            (Some(r), None) => {
                return self
                    .create_session_from_source(ctx, r, req.initial_tags, policy)
                    .await;
            }
            _ => {}
        }
        let now = self.inner.env.now();
        let rec = store::SessionRecord {
            id: SessionId::from_suffix(&self.inner.env.id_suffix()),
            tenant: tenant_of(ctx).clone(),
            base_fingerprint: fingerprint(&["empty"]),
            source_ref: None,
            status: SessionStatus::Active,
            tags: req.initial_tags,
            generation: 0,
            created_at: now,
            last_activity_at: now,
            approval_policy: policy,
        };
        let session = self.view(&rec);
        let idem = self.idempotency(ctx, Outcome::Session(session.clone()));
        self.inner
            .meta
            .insert_session(
                &rec,
                &Entry::root(now),
                self.event(ctx, "SESSION_CREATED", 0),
                idem,
            )
            .await?;
        Ok(session)
    }

    async fn list_sessions(&self, ctx: &Ctx, req: ListSessionsRequest) -> Result<Page<Session>> {
        ctx.principal.require(Scope::SessionRead)?;
        let limit = req.page.size()?;
        let after = match &req.page.page_token {
            Some(t) => Some(SessionId::parse(&plan::decode_token("sessions", t)?)?),
            None => None,
        };
        let filter = SessionFilter {
            status: req.status,
            tag: req.tag.as_deref().map(plan::parse_tag_filter).transpose()?,
            source_id: req.source_id,
        };
        let mut recs = self
            .inner
            .meta
            .list_sessions(tenant_of(ctx), &filter, after.as_ref(), limit + 1)
            .await?;
        let more = recs.len() > limit;
        recs.truncate(limit);
        let next_page_token =
            more.then(|| plan::encode_token("sessions", recs.last().map_or("", |r| r.id.as_str())));
        Ok(Page {
            items: recs.iter().map(|r| self.view(r)).collect(),
            next_page_token,
        })
    }

    async fn get_session(&self, ctx: &Ctx, session_id: &str) -> Result<Session> {
        Ok(self.view(&self.authorize(ctx, Scope::SessionRead, session_id).await?))
    }

    async fn delete_session(&self, ctx: &Ctx, session_id: &str) -> Result<()> {
        let rec = self
            .authorize(ctx, Scope::SessionDelete, session_id)
            .await?;
        if !self.inner.meta.delete_session(&rec.tenant, &rec.id).await? {
            return Err(Error::not_found(format!("session {session_id} not found")));
        }
        self.notify(&rec.id);
        Ok(())
    }

    async fn archive_session(&self, ctx: &Ctx, session_id: &str) -> Result<Session> {
        self.transition(ctx, session_id, Transition::Archive, "SESSION_ARCHIVED")
            .await
    }

    async fn reactivate_session(&self, ctx: &Ctx, session_id: &str) -> Result<Session> {
        self.transition(
            ctx,
            session_id,
            Transition::Reactivate,
            "SESSION_REACTIVATED",
        )
        .await
    }

    async fn fork_session(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ForkSessionRequest,
    ) -> Result<Session> {
        let origin = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        if let Some(o) = self.replay(ctx, session_id).await? {
            return replayed!(o, Session);
        }
        plan::validate_tags(&req.initial_tags)?;
        let now = self.inner.env.now();
        let mut tags: BTreeMap<String, String> = origin.tags.clone();
        tags.extend(req.initial_tags);
        let fork = store::SessionRecord {
            id: SessionId::from_suffix(&self.inner.env.id_suffix()),
            tenant: origin.tenant.clone(),
            base_fingerprint: fingerprint(&[
                "fork",
                origin.id.as_str(),
                &origin.generation.to_string(),
            ]),
            source_ref: origin.source_ref.clone(),
            status: SessionStatus::Active,
            tags,
            generation: origin.generation,
            created_at: now,
            last_activity_at: now,
            approval_policy: origin.approval_policy.clone(),
        };
        let session = self.view(&fork);
        let mut origin_event = self.event(ctx, "SESSION_FORKED", origin.generation);
        origin_event.related_id = Some(fork.id.as_str().to_owned());
        let mut fork_event = self.event(ctx, "SESSION_CREATED", fork.generation);
        fork_event.related_id = Some(origin.id.as_str().to_owned());
        let idem = self.idempotency(ctx, Outcome::Session(session.clone()));
        self.inner
            .meta
            .fork_session(&origin, &fork, origin_event, fork_event, idem)
            .await?;
        self.notify(&origin.id);
        Ok(session)
    }

    async fn create_checkpoint(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: CreateCheckpointRequest,
    ) -> Result<Checkpoint> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        if let Some(o) = self.replay(ctx, session_id).await? {
            return replayed!(o, Checkpoint);
        }
        validate_checkpoint_name(&req.name)?;
        let checkpoint = Checkpoint {
            id: CheckpointId::from_suffix(&self.inner.env.id_suffix())
                .as_str()
                .to_owned(),
            session_id: rec.id.as_str().to_owned(),
            name: req.name,
            generation: rec.generation,
            created_at: self.inner.env.now(),
        };
        let mut event = self.event(ctx, "CHECKPOINT_CREATED", rec.generation);
        event.related_id = Some(checkpoint.id.clone());
        let idem = self.idempotency(ctx, Outcome::Checkpoint(checkpoint.clone()));
        self.inner
            .meta
            .create_checkpoint(&rec.tenant, &rec.id, &checkpoint, event, idem)
            .await?;
        self.notify(&rec.id);
        Ok(checkpoint)
    }

    async fn list_checkpoints(
        &self,
        ctx: &Ctx,
        session_id: &str,
        page: PageRequest,
    ) -> Result<Page<Checkpoint>> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        let limit = page.size()?;
        let after = match &page.page_token {
            Some(t) => Some(CheckpointId::parse(&plan::decode_token("checkpoints", t)?)?),
            None => None,
        };
        let mut items = self
            .inner
            .meta
            .list_checkpoints(&rec.tenant, &rec.id, after.as_ref(), limit + 1)
            .await?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_page_token = more
            .then(|| plan::encode_token("checkpoints", items.last().map_or("", |c| c.id.as_str())));
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn restore_checkpoint(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: RestoreRequest,
    ) -> Result<Session> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        if let Some(o) = self.replay(ctx, session_id).await? {
            return replayed!(o, Session);
        }
        rec.status.check_writable()?;
        let ckpt_id = CheckpointId::parse(&req.checkpoint_id)?;
        if self
            .inner
            .meta
            .checkpoint(&rec.tenant, &rec.id, &ckpt_id)
            .await?
            .is_none()
        {
            return Err(Error::not_found(format!(
                "checkpoint {} not found in session {session_id}",
                req.checkpoint_id
            )));
        }
        match req.paths {
            None => {
                let _guard = self.inner.write_locks[crate::mutate::shard_of(session_id)]
                    .lock()
                    .await;
                let current = self.load(&ctx.principal, session_id).await?;
                let mut after = current.clone();
                after.generation += 1;
                after.last_activity_at = self.inner.env.now();
                let mut event = self.event(ctx, "RESTORED", after.generation);
                event.path = Some("/".to_owned());
                event.related_id = Some(req.checkpoint_id.clone());
                let idem = self.idempotency(ctx, Outcome::Session(self.view(&after)));
                match self
                    .inner
                    .meta
                    .restore_tree(
                        &rec.tenant,
                        &rec.id,
                        &ckpt_id,
                        current.generation,
                        event,
                        idem,
                    )
                    .await?
                {
                    CommitOutcome::Committed { .. } => {
                        self.notify(&rec.id);
                        Ok(self.view(&after))
                    }
                    CommitOutcome::GenerationMoved { .. } => Err(Error::new(
                        aether_domain::Code::Aborted,
                        format!("session {session_id} changed during the restore; retry"),
                    )),
                    CommitOutcome::KeyRecorded => Err(crate::mutate::applied_concurrently()),
                }
            }
            Some(paths) => {
                if paths.is_empty() {
                    return Err(Error::invalid(
                        "paths is empty; omit it to restore the whole tree",
                    ));
                }
                let tree = TreeRef::Checkpoint {
                    tenant: rec.tenant.clone(),
                    session: rec.id.clone(),
                    checkpoint: ckpt_id,
                };
                let reader = crate::reader::StoreReader {
                    meta: &self.inner.meta,
                    tree,
                };
                let mut planned = Vec::with_capacity(paths.len());
                for raw in &paths {
                    let path = plan::path(raw)?;
                    use aether_domain::tree::TreeRead;
                    let mut entries = Vec::new();
                    if let Some(top) = reader.entry(&path).await? {
                        let is_dir = top.is_dir();
                        entries.push(top);
                        if is_dir {
                            entries.extend(reader.descendants(&path).await?);
                        }
                    }
                    planned.push(Planned::Op(Op::ReplaceSubtree { path, entries }));
                }
                let ctx_no_key = Ctx {
                    principal: ctx.principal.clone(),
                    idempotency_key: None,
                };
                self.mutate(&ctx_no_key, session_id, planned, |_| Outcome::Done)
                    .await?;
                let session = self.view(&self.load(&ctx.principal, session_id).await?);
                Ok(session)
            }
        }
    }
}
