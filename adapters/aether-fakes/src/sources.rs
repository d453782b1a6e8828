//! `SourceStore` in memory: sources, revisions and jobs in maps; a session over a revision
//! shares the checkpoint's tree map until its first write.

use std::collections::BTreeMap;
use std::sync::Arc;

use aether_domain::{CheckpointId, Entry, Error, Result, SessionId, TenantId};
use aether_ports::sources::{Job, Source};
use aether_ports::store::*;

use crate::memory::{MemoryMetadataStore, StoredSession, append, remember};

impl SourceStore for MemoryMetadataStore {
    async fn insert_source(
        &self,
        record: &SourceRecord,
        holder: &SessionRecord,
        root: &Entry,
    ) -> Result<()> {
        self.with(|state| {
            let mut tree = BTreeMap::new();
            tree.insert(root.path.clone(), root.clone());
            state.sessions.insert(
                holder.id.clone(),
                StoredSession::new(holder.clone(), Arc::new(tree)),
            );
            state.sources.insert(
                (holder.tenant.as_str().to_owned(), record.source.id.clone()),
                record.clone(),
            );
            Ok(())
        })
    }

    async fn source(&self, tenant: &TenantId, id: &str) -> Result<Option<SourceRecord>> {
        self.with(|state| {
            Ok(state
                .sources
                .get(&(tenant.as_str().to_owned(), id.to_owned()))
                .cloned())
        })
    }

    async fn list_sources(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SourceRecord>> {
        self.with(|state| {
            Ok(state
                .sources
                .iter()
                .filter(|((t, id), _)| {
                    t == tenant.as_str() && after.is_none_or(|a| id.as_str() > a)
                })
                .take(limit)
                .map(|(_, r)| r.clone())
                .collect())
        })
    }

    async fn put_source(&self, tenant: &TenantId, source: &Source) -> Result<()> {
        self.with(|state| {
            let r = state
                .sources
                .get_mut(&(tenant.as_str().to_owned(), source.id.clone()))
                .ok_or_else(|| Error::not_found(format!("source {} not found", source.id)))?;
            r.source = source.clone();
            Ok(())
        })
    }

    async fn insert_revision(
        &self,
        tenant: &TenantId,
        revision: &RevisionRecord,
        source: &Source,
    ) -> Result<()> {
        self.with(|state| {
            let r = state
                .sources
                .get_mut(&(tenant.as_str().to_owned(), source.id.clone()))
                .ok_or_else(|| Error::not_found(format!("source {} not found", source.id)))?;
            r.source = source.clone();
            state.revisions.insert(
                (source.id.clone(), revision.revision.id.clone()),
                revision.clone(),
            );
            Ok(())
        })
    }

    async fn revision(
        &self,
        tenant: &TenantId,
        source_id: &str,
        revision_id: &str,
    ) -> Result<Option<RevisionRecord>> {
        self.with(|state| {
            if !state
                .sources
                .contains_key(&(tenant.as_str().to_owned(), source_id.to_owned()))
            {
                return Ok(None);
            }
            Ok(state
                .revisions
                .get(&(source_id.to_owned(), revision_id.to_owned()))
                .cloned())
        })
    }

    async fn put_job(&self, _tenant: &TenantId, job: &Job) -> Result<()> {
        self.with(|state| {
            state
                .jobs
                .insert((job.source_id.clone(), job.id.clone()), job.clone());
            Ok(())
        })
    }

    async fn job(&self, tenant: &TenantId, source_id: &str, job_id: &str) -> Result<Option<Job>> {
        self.with(|state| {
            if !state
                .sources
                .contains_key(&(tenant.as_str().to_owned(), source_id.to_owned()))
            {
                return Ok(None);
            }
            Ok(state
                .jobs
                .get(&(source_id.to_owned(), job_id.to_owned()))
                .cloned())
        })
    }

    async fn insert_session_at(
        &self,
        holder: &SessionId,
        at: &CheckpointId,
        session: &SessionRecord,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        self.with(|state| {
            let tree = state
                .sessions
                .get(holder)
                .and_then(|h| h.checkpoints.get(at.as_str()))
                .map(|(_, t)| t.clone())
                .ok_or_else(|| {
                    Error::internal(format!("checkpoint {at} of {holder} is missing"))
                })?;
            let mut s = StoredSession::new(session.clone(), tree);
            append(&mut s, vec![event]);
            state.sessions.insert(session.id.clone(), s);
            remember(state, &session.tenant, "", idem);
            Ok(())
        })
    }
}
