//! In-memory metadata and blob stores. Trees are `Arc`-shared maps: a fork or checkpoint shares
//! the map and the first write after sharing copies it (a different COW strategy from SQLite's
//! layers, which is what makes running one conformance suite over both worthwhile).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use aether_domain::{
    CheckpointId, Entry, Error, Result, SessionId, SessionPath, SessionStatus, TenantId,
};
use aether_ports::store::*;
use aether_ports::{Checkpoint, Event};

pub(crate) type Tree = Arc<BTreeMap<SessionPath, Entry>>;

pub(crate) struct StoredSession {
    pub(crate) rec: SessionRecord,
    pub(crate) tree: Tree,
    pub(crate) checkpoints: BTreeMap<String, (Checkpoint, Tree)>,
    pub(crate) events: Vec<Event>,
    /// The knowledge cache: key → (record, deleted).
    pub(crate) kv: BTreeMap<String, (KvRecord, bool)>,
    pub(crate) approvals: BTreeMap<String, aether_ports::review::Approval>,
    pub(crate) commits: BTreeMap<String, aether_ports::review::Commit>,
    pub(crate) annotations: BTreeMap<String, aether_ports::review::Annotation>,
    /// Retained bus messages, oldest first.
    pub(crate) bus: std::collections::VecDeque<aether_ports::bus::BusMessage>,
    pub(crate) bus_sequence: u64,
    pub(crate) stats: SessionStats,
    pub(crate) health: Option<aether_ports::insight::SessionHealth>,
}

impl StoredSession {
    /// A session over `tree` with no history yet.
    pub(crate) fn new(rec: SessionRecord, tree: Tree) -> StoredSession {
        StoredSession {
            rec,
            tree,
            checkpoints: BTreeMap::new(),
            events: Vec::new(),
            kv: BTreeMap::new(),
            approvals: BTreeMap::new(),
            commits: BTreeMap::new(),
            annotations: BTreeMap::new(),
            bus: Default::default(),
            bus_sequence: 0,
            stats: SessionStats::default(),
            health: None,
        }
    }
}

/// A session by id, whatever its tenant (callers checked it), or not found.
pub(crate) fn stored<'a>(
    sessions: &'a mut BTreeMap<SessionId, StoredSession>,
    id: &SessionId,
) -> Result<&'a mut StoredSession> {
    sessions
        .get_mut(id)
        .ok_or_else(|| Error::not_found(format!("session {id} not found")))
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) sessions: BTreeMap<SessionId, StoredSession>,
    /// Sources by (tenant, id); revisions and jobs by (source, id).
    pub(crate) sources: BTreeMap<(String, String), SourceRecord>,
    pub(crate) revisions: BTreeMap<(String, String), RevisionRecord>,
    pub(crate) jobs: BTreeMap<(String, String), aether_ports::sources::Job>,
    /// Sealed secrets by (tenant or `*`, scope key, name).
    pub(crate) secrets: BTreeMap<(String, String, String), SecretRecord>,
    idempotency: HashMap<(String, String, String), Outcome>,
}

#[derive(Clone, Default)]
pub struct MemoryMetadataStore {
    state: Arc<Mutex<State>>,
}

impl MemoryMetadataStore {
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State) -> Result<R>) -> Result<R> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| Error::internal("in-memory store poisoned"))?;
        f(&mut state)
    }
}

pub(crate) fn session_mut<'a>(
    state: &'a mut State,
    tenant: &TenantId,
    id: &SessionId,
) -> Result<&'a mut StoredSession> {
    state
        .sessions
        .get_mut(id)
        .filter(|s| &s.rec.tenant == tenant)
        .ok_or_else(|| Error::not_found(format!("session {id} not found")))
}

pub(crate) fn append(s: &mut StoredSession, events: Vec<NewEvent>) {
    for e in events {
        let sequence = s.events.last().map_or(1, |l| l.sequence + 1);
        s.events.push(Event {
            sequence,
            session_id: s.rec.id.as_str().to_owned(),
            kind: e.kind,
            path: e.path,
            to_path: e.to_path,
            related_id: e.related_id,
            principal: e.principal,
            generation: e.generation,
            time: e.time,
        });
    }
}

pub(crate) fn remember(
    state: &mut State,
    tenant: &TenantId,
    scope: &str,
    idem: Option<IdempotencyRecord>,
) {
    if let Some(i) = idem {
        state.idempotency.insert(
            (tenant.as_str().to_owned(), scope.to_owned(), i.key),
            i.outcome,
        );
    }
}

/// Whether `idem`'s key is recorded already (two copies of one request never both apply).
fn recorded(
    state: &State,
    tenant: &TenantId,
    scope: &str,
    idem: &Option<IdempotencyRecord>,
) -> bool {
    idem.as_ref()
        .is_some_and(|i| recorded_key(state, tenant, scope, &i.key))
}

fn recorded_key(state: &State, tenant: &TenantId, scope: &str, key: &str) -> bool {
    state
        .idempotency
        .contains_key(&(tenant.as_str().to_owned(), scope.to_owned(), key.to_owned()))
}

fn tree_of(state: &State, tree: &TreeRef) -> Result<Tree> {
    match tree {
        TreeRef::Session { tenant, session } => state
            .sessions
            .get(session)
            .filter(|s| &s.rec.tenant == tenant)
            .map(|s| s.tree.clone())
            .ok_or_else(|| Error::not_found(format!("session {session} not found"))),
        TreeRef::Checkpoint {
            tenant,
            session,
            checkpoint,
        } => state
            .sessions
            .get(session)
            .filter(|s| &s.rec.tenant == tenant)
            .and_then(|s| s.checkpoints.get(checkpoint.as_str()))
            .map(|(_, t)| t.clone())
            .ok_or_else(|| Error::not_found(format!("checkpoint {checkpoint} not found"))),
    }
}

impl MetadataStore for MemoryMetadataStore {
    async fn insert_session(
        &self,
        rec: &SessionRecord,
        root: &Entry,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        self.with(|state| {
            let mut tree = BTreeMap::new();
            tree.insert(root.path.clone(), root.clone());
            let mut s = StoredSession::new(rec.clone(), Arc::new(tree));
            append(&mut s, vec![event]);
            state.sessions.insert(rec.id.clone(), s);
            remember(state, &rec.tenant, "", idem);
            Ok(())
        })
    }

    async fn session(&self, tenant: &TenantId, id: &SessionId) -> Result<Option<SessionRecord>> {
        self.with(|state| {
            Ok(state
                .sessions
                .get(id)
                .filter(|s| &s.rec.tenant == tenant)
                .map(|s| s.rec.clone()))
        })
    }

    async fn list_sessions(
        &self,
        tenant: &TenantId,
        filter: &SessionFilter,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>> {
        self.with(|state| {
            Ok(state
                .sessions
                .values()
                .map(|s| &s.rec)
                .filter(|r| &r.tenant == tenant && after.is_none_or(|a| &r.id > a))
                .filter(|r| !is_holder(r.id.as_str()))
                .filter(|r| filter.status.is_none_or(|st| r.status == st))
                .filter(|r| {
                    filter
                        .tag
                        .as_ref()
                        .is_none_or(|(k, v)| r.tags.get(k) == Some(v))
                })
                .filter(|r| {
                    filter
                        .source_id
                        .as_ref()
                        .is_none_or(|id| r.source_ref.as_ref().is_some_and(|s| &s.source_id == id))
                })
                .take(limit)
                .cloned()
                .collect())
        })
    }

    async fn delete_session(&self, tenant: &TenantId, id: &SessionId) -> Result<bool> {
        self.with(|state| {
            let exists = state
                .sessions
                .get(id)
                .is_some_and(|s| &s.rec.tenant == tenant);
            if exists {
                state.sessions.remove(id);
                state
                    .secrets
                    .retain(|(_, scope, _), _| scope != id.as_str());
                state
                    .idempotency
                    .retain(|(_, scope, _), _| scope != id.as_str());
            }
            Ok(exists)
        })
    }

    async fn set_status(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        from: SessionStatus,
        to: SessionStatus,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<bool> {
        self.with(|state| {
            let s = session_mut(state, tenant, id)?;
            if s.rec.status != from {
                return Ok(false);
            }
            s.rec.status = to;
            s.rec.last_activity_at = event.time;
            append(s, vec![event]);
            remember(state, tenant, id.as_str(), idem);
            Ok(true)
        })
    }

    async fn fork_session(
        &self,
        origin: &SessionRecord,
        fork: &SessionRecord,
        origin_event: NewEvent,
        fork_event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        self.with(|state| {
            let o = session_mut(state, &origin.tenant, &origin.id)?;
            let tree = o.tree.clone();
            append(o, vec![origin_event]);
            let mut s = StoredSession::new(fork.clone(), tree);
            append(&mut s, vec![fork_event]);
            state.sessions.insert(fork.id.clone(), s);
            remember(state, &origin.tenant, origin.id.as_str(), idem);
            Ok(())
        })
    }

    async fn create_checkpoint(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        checkpoint: &Checkpoint,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        self.with(|state| {
            let s = session_mut(state, tenant, session)?;
            let tree = s.tree.clone();
            s.checkpoints
                .insert(checkpoint.id.clone(), (checkpoint.clone(), tree));
            append(s, vec![event]);
            remember(state, tenant, session.as_str(), idem);
            Ok(())
        })
    }

    async fn checkpoint(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        id: &CheckpointId,
    ) -> Result<Option<Checkpoint>> {
        self.with(|state| {
            Ok(state
                .sessions
                .get(session)
                .filter(|s| &s.rec.tenant == tenant)
                .and_then(|s| s.checkpoints.get(id.as_str()))
                .map(|(c, _)| c.clone()))
        })
    }

    async fn list_checkpoints(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        after: Option<&CheckpointId>,
        limit: usize,
    ) -> Result<Vec<Checkpoint>> {
        self.with(|state| {
            let s = session_mut(state, tenant, session)?;
            Ok(s.checkpoints
                .values()
                .filter(|(c, _)| after.is_none_or(|a| c.id.as_str() > a.as_str()))
                .take(limit)
                .map(|(c, _)| c.clone())
                .collect())
        })
    }

    async fn restore_tree(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        checkpoint: &CheckpointId,
        expected_generation: u64,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<CommitOutcome> {
        self.with(|state| {
            if recorded(state, tenant, session.as_str(), &idem) {
                return Ok(CommitOutcome::KeyRecorded);
            }
            let s = session_mut(state, tenant, session)?;
            if s.rec.generation != expected_generation {
                return Ok(CommitOutcome::GenerationMoved {
                    current: s.rec.generation,
                });
            }
            let tree = s
                .checkpoints
                .get(checkpoint.as_str())
                .map(|(_, t)| t.clone())
                .ok_or_else(|| Error::not_found(format!("checkpoint {checkpoint} not found")))?;
            s.tree = tree;
            s.rec.generation += 1;
            s.rec.last_activity_at = event.time;
            let generation = s.rec.generation;
            append(s, vec![event]);
            remember(state, tenant, session.as_str(), idem);
            Ok(CommitOutcome::Committed { generation })
        })
    }

    async fn entry(&self, tree: &TreeRef, path: &SessionPath) -> Result<Option<Entry>> {
        self.with(|state| Ok(tree_of(state, tree)?.get(path).cloned()))
    }

    async fn by_inode(&self, tree: &TreeRef, inode: u64) -> Result<Vec<Entry>> {
        let tree = self.with(|state| tree_of(state, tree))?;
        Ok(tree
            .values()
            .filter(|e| e.inode == inode)
            .cloned()
            .collect())
    }

    async fn list(&self, tree: &TreeRef, q: &ListQuery) -> Result<(Vec<Entry>, bool)> {
        let tree = self.with(|state| tree_of(state, tree))?;
        let start = q.after.clone().unwrap_or_else(|| q.dir.clone());
        // Descendants are contiguous in byte order from `<dir>/`, but siblings such as `/b-c`
        // sort between `/b` and `/b/…`, so skip those before taking the run.
        let prefix = q.dir.descendant_prefix();
        let mut out: Vec<Entry> = tree
            .range(start..)
            .map(|(_, e)| e)
            .filter(|e| Some(&e.path) != q.after.as_ref() && e.path != q.dir)
            .skip_while(|e| !q.dir.is_ancestor_of(&e.path) && e.path.as_str() < prefix.as_str())
            .take_while(|e| q.dir.is_ancestor_of(&e.path))
            .filter(|e| q.recursive || e.path.parent() == q.dir)
            .take(q.limit + 1)
            .cloned()
            .collect();
        let more = out.len() > q.limit;
        out.truncate(q.limit);
        Ok((out, more))
    }

    async fn commit(&self, commit: TreeCommit) -> Result<CommitOutcome> {
        self.with(|state| {
            if commit
                .idempotency
                .iter()
                .any(|i| recorded_key(state, &commit.tenant, commit.session.as_str(), &i.key))
            {
                return Ok(CommitOutcome::KeyRecorded);
            }
            if commit.generation <= commit.expected_generation {
                return Err(Error::internal("a commit must advance the generation"));
            }
            let s = session_mut(state, &commit.tenant, &commit.session)?;
            if s.rec.generation != commit.expected_generation {
                return Ok(CommitOutcome::GenerationMoved {
                    current: s.rec.generation,
                });
            }
            let tree = Arc::make_mut(&mut s.tree);
            for c in commit.changes {
                match c.entry {
                    Some(e) => tree.insert(c.path, e),
                    None => tree.remove(&c.path),
                };
            }
            s.stats.writes += commit.generation - s.rec.generation;
            s.rec.generation = commit.generation;
            s.rec.last_activity_at = commit.time;
            s.stats.bytes_written += commit.bytes_written;
            s.stats.first_write_at.get_or_insert(commit.time);
            let generation = s.rec.generation;
            append(s, commit.events);
            for idem in commit.idempotency {
                remember(state, &commit.tenant, commit.session.as_str(), Some(idem));
            }
            Ok(CommitOutcome::Committed { generation })
        })
    }

    async fn idempotent_outcome(
        &self,
        tenant: &TenantId,
        session: &str,
        key: &str,
    ) -> Result<Option<Outcome>> {
        self.with(|state| {
            Ok(state
                .idempotency
                .get(&(
                    tenant.as_str().to_owned(),
                    session.to_owned(),
                    key.to_owned(),
                ))
                .cloned())
        })
    }

    async fn events(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        q: &EventQuery,
    ) -> Result<Vec<Event>> {
        self.with(|state| {
            let s = session_mut(state, tenant, session)?;
            Ok(s.events
                .iter()
                .filter(|e| e.sequence > q.after_sequence)
                .filter(|e| {
                    q.since.is_none_or(|t| e.time >= t) && q.until.is_none_or(|t| e.time < t)
                })
                .filter(|e| q.types.is_empty() || q.types.contains(&e.kind))
                .take(q.limit)
                .cloned()
                .collect())
        })
    }

    async fn referenced_blobs(
        &self,
        hashes: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        self.with(|state| {
            let mut live = std::collections::HashSet::new();
            for s in state.sessions.values() {
                let trees = std::iter::once(&s.tree).chain(s.checkpoints.values().map(|(_, t)| t));
                for tree in trees {
                    live.extend(tree.values().filter_map(|e| e.content_hash.clone()));
                }
            }
            Ok(hashes
                .iter()
                .filter(|h| live.contains(*h))
                .cloned()
                .collect())
        })
    }

    async fn forget_blobs(&self, _hashes: &[String]) -> Result<()> {
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    async fn append_event(&self, session: &SessionId, event: NewEvent) -> Result<()> {
        self.with(|state| {
            let s = state
                .sessions
                .get_mut(session)
                .ok_or_else(|| Error::not_found(format!("session {session} not found")))?;
            append(s, vec![event]);
            Ok(())
        })
    }
}

/// Blobs in a hash map, with the time each was last written or touched.
#[derive(Clone, Default)]
pub struct MemoryBlobStore {
    blobs: Arc<Mutex<HashMap<String, (Bytes, std::time::Instant)>>>,
}

impl BlobStore for MemoryBlobStore {
    async fn put(&self, data: Bytes) -> Result<String> {
        let hash = aether_domain::tree::content_hash(&data);
        let mut blobs = self
            .blobs
            .lock()
            .map_err(|_| Error::internal("in-memory blob store poisoned"))?;
        blobs.insert(hash.clone(), (data, std::time::Instant::now()));
        Ok(hash)
    }

    async fn put_stream(&self, chunks: aether_ports::ByteStream) -> Result<(String, u64)> {
        let data = aether_ports::FileBody::Stream { len: None, chunks }
            .collect()
            .await?;
        let size = data.len() as u64;
        Ok((self.put(data).await?, size))
    }

    async fn usage(&self) -> Result<(u64, u64)> {
        let blobs = self
            .blobs
            .lock()
            .map_err(|_| Error::internal("in-memory blob store poisoned"))?;
        Ok((
            blobs.len() as u64,
            blobs.values().map(|(b, _)| b.len() as u64).sum(),
        ))
    }

    async fn get(&self, hash: &str, range: Option<(u64, u64)>) -> Result<Bytes> {
        let blobs = self
            .blobs
            .lock()
            .map_err(|_| Error::internal("in-memory blob store poisoned"))?;
        let (b, _) = blobs
            .get(hash)
            .ok_or_else(|| Error::internal(format!("blob {hash} is missing")))?;
        Ok(match range {
            Some((s, e)) => b.slice(s as usize..e as usize),
            None => b.clone(),
        })
    }

    async fn get_chunks(
        &self,
        hash: &str,
        range: Option<(u64, u64)>,
    ) -> Result<aether_ports::ByteStream> {
        // Small chunks, each a separate wake-up, so that tests see what a network gives: many
        // chunks, with other tasks running between them.
        const CHUNK: usize = 64 << 10;
        let data = self.get(hash, range).await?;
        let chunks = futures::stream::unfold(0, move |at| {
            let data = data.clone();
            async move {
                if at >= data.len() {
                    return None;
                }
                if at > 0 {
                    tokio::task::yield_now().await;
                }
                let end = (at + CHUNK).min(data.len());
                Some((Ok(data.slice(at..end)), end))
            }
        });
        Ok(Box::pin(chunks))
    }

    async fn idle(&self, grace: std::time::Duration) -> Result<Vec<String>> {
        let blobs = self
            .blobs
            .lock()
            .map_err(|_| Error::internal("in-memory blob store poisoned"))?;
        Ok(blobs
            .iter()
            .filter(|(_, (_, t))| t.elapsed() >= grace)
            .map(|(h, _)| h.clone())
            .collect())
    }

    async fn remove_if_idle(&self, hash: &str, grace: std::time::Duration) -> Result<bool> {
        let mut blobs = self
            .blobs
            .lock()
            .map_err(|_| Error::internal("in-memory blob store poisoned"))?;
        let idle = blobs.get(hash).is_some_and(|(_, t)| t.elapsed() >= grace);
        if idle {
            blobs.remove(hash);
        }
        Ok(idle)
    }
}

impl BusStore for MemoryMetadataStore {
    async fn bus_append(
        &self,
        session: &SessionId,
        mut message: aether_ports::bus::BusMessage,
        retention: usize,
    ) -> Result<aether_ports::bus::BusMessage> {
        self.with(|state| {
            let s = state
                .sessions
                .get_mut(session)
                .ok_or_else(|| Error::not_found(format!("session {session} not found")))?;
            s.bus_sequence += 1;
            message.sequence = s.bus_sequence;
            s.bus.push_back(message.clone());
            while s.bus.len() > retention {
                s.bus.pop_front();
            }
            Ok(message)
        })
    }

    async fn bus_retained(
        &self,
        session: &SessionId,
    ) -> Result<Vec<aether_ports::bus::BusMessage>> {
        self.with(|state| {
            Ok(state
                .sessions
                .get(session)
                .map(|s| s.bus.iter().cloned().collect())
                .unwrap_or_default())
        })
    }
}

impl SecretStore for MemoryMetadataStore {
    async fn put_secret(
        &self,
        home: &SecretHome,
        name: &str,
        sealed: Vec<u8>,
        now: aether_domain::Timestamp,
    ) -> Result<SecretRecord> {
        self.with(|state| {
            let key = (home.0.clone(), home.1.clone(), name.to_owned());
            let version = state.secrets.get(&key).map_or(0, |r| r.version) + 1;
            let record = SecretRecord {
                scope_key: home.1.clone(),
                name: name.to_owned(),
                sealed,
                version,
                updated_at: now,
            };
            state.secrets.insert(key, record.clone());
            Ok(record)
        })
    }

    async fn secret(&self, home: &SecretHome, name: &str) -> Result<Option<SecretRecord>> {
        self.with(|state| {
            Ok(state
                .secrets
                .get(&(home.0.clone(), home.1.clone(), name.to_owned()))
                .cloned())
        })
    }

    async fn secrets(&self, homes: &[SecretHome]) -> Result<Vec<SecretRecord>> {
        self.with(|state| {
            let mut out: Vec<(usize, SecretRecord)> = state
                .secrets
                .iter()
                .filter_map(|((t, s, _), r)| {
                    homes
                        .iter()
                        .position(|h| &h.0 == t && &h.1 == s)
                        .map(|i| (i, r.clone()))
                })
                .collect();
            out.sort_by(|a, b| a.1.name.cmp(&b.1.name).then(a.0.cmp(&b.0)));
            Ok(out.into_iter().map(|(_, r)| r).collect())
        })
    }

    async fn delete_secret(&self, home: &SecretHome, name: &str) -> Result<bool> {
        self.with(|state| {
            Ok(state
                .secrets
                .remove(&(home.0.clone(), home.1.clone(), name.to_owned()))
                .is_some())
        })
    }
}

impl InsightStore for MemoryMetadataStore {
    async fn put_health(
        &self,
        session: &SessionId,
        health: &aether_ports::insight::SessionHealth,
    ) -> Result<()> {
        self.with(|state| {
            let s = state
                .sessions
                .get_mut(session)
                .ok_or_else(|| Error::not_found(format!("session {session} not found")))?;
            s.health = Some(health.clone());
            Ok(())
        })
    }

    async fn health(
        &self,
        session: &SessionId,
    ) -> Result<Option<aether_ports::insight::SessionHealth>> {
        self.with(|state| Ok(state.sessions.get(session).and_then(|s| s.health.clone())))
    }

    async fn session_stats(&self, session: &SessionId) -> Result<SessionStats> {
        self.with(|state| {
            let Some(s) = state.sessions.get(session) else {
                return Ok(SessionStats::default());
            };
            let count = |kind: &str| s.events.iter().filter(|e| e.kind == kind).count() as u64;
            Ok(SessionStats {
                checkpoints: count("CHECKPOINT_CREATED"),
                restores: count("RESTORED"),
                ..s.stats.clone()
            })
        })
    }

    async fn add_bytes_read(&self, reads: Vec<(SessionId, u64)>) -> Result<()> {
        self.with(|state| {
            for (session, bytes) in reads {
                if let Some(s) = state.sessions.get_mut(&session) {
                    s.stats.bytes_read += bytes;
                }
            }
            Ok(())
        })
    }

    async fn tenant_footprint(&self, tenant: &TenantId) -> Result<TenantFootprint> {
        self.with(|state| {
            let mut foot = TenantFootprint::default();
            // Trees shared by forks and checkpoints are counted once, as in the layered store.
            let mut seen = std::collections::HashSet::new();
            for s in state.sessions.values().filter(|s| &s.rec.tenant == tenant) {
                if !is_holder(s.rec.id.as_str()) {
                    foot.sessions_created.push(s.rec.created_at);
                }
                foot.egress_bytes += s.stats.bytes_read;
                let trees = std::iter::once(&s.tree).chain(s.checkpoints.values().map(|(_, t)| t));
                for t in trees {
                    if seen.insert(Arc::as_ptr(t)) {
                        foot.stored_bytes += t
                            .values()
                            .filter(|e| e.kind == aether_domain::EntryKind::File)
                            .map(|e| e.size)
                            .sum::<u64>();
                    }
                }
            }
            Ok(foot)
        })
    }

    async fn refcount_histogram(&self) -> Result<Vec<(u64, u64)>> {
        self.with(|state| {
            let mut refs: HashMap<String, u64> = HashMap::new();
            let mut seen = std::collections::HashSet::new();
            for s in state.sessions.values() {
                let trees = std::iter::once(&s.tree).chain(s.checkpoints.values().map(|(_, t)| t));
                for t in trees {
                    if seen.insert(Arc::as_ptr(t)) {
                        for e in t.values() {
                            if let Some(h) = &e.content_hash {
                                *refs.entry(h.clone()).or_default() += 1;
                            }
                        }
                    }
                }
            }
            let mut hist: BTreeMap<u64, u64> = BTreeMap::new();
            for n in refs.values() {
                *hist.entry(*n).or_default() += 1;
            }
            Ok(hist.into_iter().collect())
        })
    }

    async fn session_counts(&self) -> Result<Vec<(aether_domain::SessionStatus, u64)>> {
        self.with(|state| {
            let mut counts = std::collections::HashMap::new();
            for s in state.sessions.values() {
                if !is_holder(s.rec.id.as_str()) {
                    *counts.entry(s.rec.status).or_insert(0u64) += 1;
                }
            }
            let mut counts: Vec<_> = counts.into_iter().collect();
            counts.sort_by_key(|(s, _): &(aether_domain::SessionStatus, u64)| s.as_str());
            Ok(counts)
        })
    }
}
