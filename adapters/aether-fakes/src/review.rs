//! `ReviewStore` in memory: each session's approvals, commits and annotations in sorted maps,
//! with the same all-or-nothing status checks as the SQLite store.

use aether_domain::{Result, SessionId, TenantId};
use aether_ports::review::{Annotation, Approval, Commit};
use aether_ports::store::*;

use crate::memory::{MemoryMetadataStore, StoredSession, append, remember, session_mut, stored};

/// Applies `change` if the session is in its `from` state; false otherwise.
fn change_status(
    s: &mut StoredSession,
    change: StatusChange,
    time: aether_domain::Timestamp,
) -> bool {
    match change {
        None => true,
        Some((from, to)) if s.rec.status == from => {
            s.rec.status = to;
            s.rec.last_activity_at = time;
            true
        }
        Some(_) => false,
    }
}

fn after_id<'a, T: Clone + 'a>(
    map: impl Iterator<Item = (&'a String, &'a T)>,
    after: Option<&str>,
    limit: usize,
) -> Vec<T> {
    map.filter(|(id, _)| after.is_none_or(|a| id.as_str() > a))
        .take(limit)
        .map(|(_, v)| v.clone())
        .collect()
}

impl ReviewStore for MemoryMetadataStore {
    async fn insert_approval(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        approval: &Approval,
        status: StatusChange,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<bool> {
        self.with(|state| {
            let s = session_mut(state, tenant, session)?;
            if !change_status(s, status, event.time) {
                return Ok(false);
            }
            s.approvals.insert(approval.id.clone(), approval.clone());
            append(s, vec![event]);
            remember(state, tenant, session.as_str(), idem);
            Ok(true)
        })
    }

    async fn approval(&self, session: &SessionId, id: &str) -> Result<Option<Approval>> {
        self.with(|state| {
            Ok(stored(&mut state.sessions, session)?
                .approvals
                .get(id)
                .cloned())
        })
    }

    async fn list_approvals(
        &self,
        session: &SessionId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Approval>> {
        self.with(|state| {
            let s = stored(&mut state.sessions, session)?;
            Ok(after_id(s.approvals.iter(), after, limit))
        })
    }

    async fn decide_approval(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        decided: &Approval,
        status: StatusChange,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<bool> {
        self.with(|state| {
            let s = session_mut(state, tenant, session)?;
            let pending = s
                .approvals
                .get(&decided.id)
                .is_some_and(|a| a.status == "PENDING");
            if !pending || s.rec.generation != decided.generation {
                return Ok(false);
            }
            if !change_status(s, status, event.time) {
                return Ok(false);
            }
            s.approvals.insert(decided.id.clone(), decided.clone());
            append(s, vec![event]);
            remember(state, tenant, session.as_str(), idem);
            Ok(true)
        })
    }

    async fn insert_commit(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        commit: &Commit,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        self.with(|state| {
            let s = session_mut(state, tenant, session)?;
            s.commits.insert(commit.id.clone(), commit.clone());
            append(s, vec![event]);
            remember(state, tenant, session.as_str(), idem);
            Ok(())
        })
    }

    async fn list_commits(
        &self,
        session: &SessionId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Commit>> {
        self.with(|state| {
            let s = stored(&mut state.sessions, session)?;
            Ok(after_id(s.commits.iter(), after, limit))
        })
    }

    async fn put_annotation(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        annotation: &Annotation,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        self.with(|state| {
            let s = session_mut(state, tenant, session)?;
            s.annotations
                .insert(annotation.id.clone(), annotation.clone());
            append(s, vec![event]);
            remember(state, tenant, session.as_str(), idem);
            Ok(())
        })
    }

    async fn annotation(&self, session: &SessionId, id: &str) -> Result<Option<Annotation>> {
        self.with(|state| {
            Ok(stored(&mut state.sessions, session)?
                .annotations
                .get(id)
                .cloned())
        })
    }

    async fn list_annotations(
        &self,
        session: &SessionId,
        status: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Annotation>> {
        self.with(|state| {
            let s = stored(&mut state.sessions, session)?;
            Ok(after_id(
                s.annotations
                    .iter()
                    .filter(|(_, a)| status.is_none_or(|st| a.status == st)),
                after,
                limit,
            ))
        })
    }
}
