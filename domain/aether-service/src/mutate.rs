//! The one write path: plan operations in a `Txn` over the current generation, store content
//! first, then commit atomically with events and the idempotency record; re-plan if another
//! writer moved the generation in between.
//!
//! Writers of one session queue behind its lock. Whoever holds the lock applies every queued
//! mutation of that session in one commit (each caller still gets its own generation, events and
//! idempotency record, and a failing caller takes back only its own changes): under load the
//! store pays one commit for many callers instead of one each.

use std::collections::{HashSet, VecDeque};

use futures::future::Either;
use tokio::sync::oneshot;

use aether_domain::tree::{Op, Txn};
use aether_domain::{Code, Entry, EntryKind, Error, Result, Scope, SessionId, TenantId};
use aether_ports::plan::{PatchPlan, Planned};
use aether_ports::store::{
    BlobStore, CommitOutcome, Environment, MetadataStore, NewEvent, SessionRecord, TreeCommit,
    TreeRef,
};
use aether_ports::{Ctx, FileBody, Outcome};

use crate::Service;
use crate::patch::QueuedPatch;
use crate::reader::StoreReader;

const MAX_ATTEMPTS: usize = 16;

/// Most queued mutations one commit carries.
const MAX_COMBINED: usize = 64;

/// Which tree a mutation changes: a session named by a caller, or a source's holder.
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    Session(&'a str),
    Holder(&'a TenantId, &'a SessionId),
}

impl Target<'_> {
    fn id(&self) -> &str {
        match self {
            Target::Session(id) => id,
            Target::Holder(_, id) => id.as_str(),
        }
    }

    fn owned(&self) -> TreeKey {
        match self {
            Target::Session(id) => TreeKey::Session((*id).to_owned()),
            Target::Holder(tenant, id) => TreeKey::Holder((*tenant).clone(), (*id).clone()),
        }
    }
}

/// A [`Target`] that can wait in a queue.
#[derive(Clone, PartialEq, Eq)]
enum TreeKey {
    Session(String),
    Holder(TenantId, SessionId),
}

/// What a successful mutation produced: one optional entry per operation, and the generation.
pub(crate) struct Applied {
    pub(crate) entries: Vec<Option<Entry>>,
    pub(crate) generation: u64,
}

/// One caller's mutation, its content already stored, waiting for its session's writer.
pub(crate) struct Queued {
    key: TreeKey,
    ctx: Ctx,
    /// `None` where a patch goes, resolved against the state the mutation is planned on.
    ops: Vec<Option<Op>>,
    patches: Vec<QueuedPatch>,
    bytes_written: u64,
    outcome: Box<dyn Fn(&Applied) -> Outcome + Send + Sync>,
    reply: oneshot::Sender<Result<Applied>>,
}

/// The mutations waiting for one lock shard.
pub(crate) type WriteQueue = std::sync::Mutex<VecDeque<Queued>>;

impl<M: MetadataStore, B: BlobStore, E: Environment> Service<M, B, E> {
    /// Applies `planned` atomically. `outcome` turns the result into what a retry with the same
    /// idempotency key must replay.
    pub(crate) async fn mutate(
        &self,
        ctx: &Ctx,
        session_id: &str,
        planned: Vec<Planned>,
        outcome: impl Fn(&Applied) -> Outcome + Send + Sync + 'static,
    ) -> Result<Applied> {
        ctx.principal.require(Scope::FilesystemWrite)?;
        self.mutate_tree(ctx, Target::Session(session_id), planned, outcome)
            .await
    }

    /// `mutate` of any tree the service keeps, a source's hidden holder included; the caller
    /// has authorized the change.
    pub(crate) async fn mutate_tree(
        &self,
        ctx: &Ctx,
        target: Target<'_>,
        planned: Vec<Planned>,
        outcome: impl Fn(&Applied) -> Outcome + Send + Sync + 'static,
    ) -> Result<Applied> {
        let mut ops = Vec::with_capacity(planned.len());
        let mut bytes_written = 0u64;
        let mut patches = Vec::new();
        for p in planned {
            match p {
                Planned::Op(op) => ops.push(Some(op)),
                Planned::Write {
                    path,
                    data,
                    mode,
                    parents,
                    expected_hash,
                } => {
                    let (hash, size) = match data {
                        FileBody::Bytes(b) => {
                            let size = b.len() as u64;
                            (self.inner.blobs.put(b).await?, size)
                        }
                        FileBody::Stream { chunks, .. } => {
                            self.inner.blobs.put_stream(chunks).await?
                        }
                    };
                    bytes_written += size;
                    ops.push(Some(Op::WriteBlob {
                        path,
                        hash,
                        size,
                        mode,
                        parents,
                        expected_hash,
                    }));
                }
                Planned::Patch(patch) => {
                    bytes_written += patch
                        .segments
                        .iter()
                        .map(|seg| seg.data.len() as u64)
                        .sum::<u64>();
                    ops.push(None);
                    patches.push(QueuedPatch::new(patch));
                }
            }
        }
        self.prepare_patches(ctx, target, &patches).await;
        let shard = shard_of(target.id());
        let (reply, mut answer) = oneshot::channel();
        self.queue(shard).push_back(Queued {
            key: target.owned(),
            ctx: ctx.clone(),
            ops,
            patches,
            bytes_written,
            outcome: Box::new(outcome),
            reply,
        });
        loop {
            // Wait for the lock, unless the holder answers this mutation meanwhile.
            let lock = self.inner.write_locks[shard].clone().lock_owned();
            let guard = match futures::future::select(&mut answer, Box::pin(lock)).await {
                Either::Left((answered, _)) => return answered.unwrap_or_else(|_| Err(lost())),
                Either::Right((guard, _)) => guard,
            };
            match answer.try_recv() {
                Ok(answered) => return answered,
                Err(oneshot::error::TryRecvError::Closed) => return Err(lost()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            let batch = self.take_batch(shard);
            match &self.inner.spawner {
                // Detached, so that a caller who goes away (a closed connection drops its
                // request) cannot strand the other callers' mutations halfway.
                Some(spawner) => {
                    let service = self.clone();
                    spawner.spawn(Box::pin(async move {
                        service.apply_queued(batch).await;
                        drop(guard);
                    }));
                }
                None => {
                    self.apply_queued(batch).await;
                    drop(guard);
                }
            }
        }
    }

    fn queue(&self, shard: usize) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
        self.inner.write_queues[shard]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The oldest queued mutation and the ones after it that change the same tree.
    fn take_batch(&self, shard: usize) -> Vec<Queued> {
        let mut queue = self.queue(shard);
        let Some(first) = queue.pop_front() else {
            return Vec::new();
        };
        let mut batch = vec![first];
        let mut rest = VecDeque::with_capacity(queue.len());
        while let Some(q) = queue.pop_front() {
            if batch.len() < MAX_COMBINED && q.key == batch[0].key {
                batch.push(q);
            } else {
                rest.push_back(q);
            }
        }
        *queue = rest;
        batch
    }

    /// Applies `batch` in one commit and answers every caller. If that commit fails as a
    /// whole, each mutation is tried again on its own, so one caller's failure (a recorded
    /// idempotency key, say) is never another's.
    async fn apply_queued(&self, batch: Vec<Queued>) {
        if batch.is_empty() {
            return;
        }
        let combined = batch.len() > 1;
        match self.commit_queued(&batch).await {
            Ok(results) => answer(batch, results),
            Err(e) if !combined => answer(batch, vec![Err(e)]),
            Err(_) => {
                for q in batch {
                    let result = match self.commit_queued(std::slice::from_ref(&q)).await {
                        Ok(mut one) => one.pop().unwrap_or_else(|| Err(lost())),
                        Err(e) => Err(e),
                    };
                    let _ = q.reply.send(result);
                }
            }
        }
    }

    /// Plans every mutation of `batch` (all of one tree) on the current state and commits them
    /// together, re-planning if another writer moved the generation. Answers one result per
    /// mutation; `Err` when the commit itself failed.
    async fn commit_queued(&self, batch: &[Queued]) -> Result<Vec<Result<Applied>>> {
        let key = &batch[0].key;
        for _ in 0..MAX_ATTEMPTS {
            let rec = match key {
                TreeKey::Session(id) => self.load(&batch[0].ctx.principal, id).await?,
                TreeKey::Holder(tenant, id) => self
                    .inner
                    .meta
                    .session(tenant, id)
                    .await?
                    .ok_or_else(|| Error::internal(format!("source tree {id} is missing")))?,
            };
            let reader = StoreReader {
                meta: &self.inner.meta,
                tree: TreeRef::Session {
                    tenant: rec.tenant.clone(),
                    session: rec.id.clone(),
                },
            };
            let now = self.inner.env.now();
            let mut txn = Txn::new(&reader, now, rec.generation + 1);
            let mut results = Vec::with_capacity(batch.len());
            let mut generation = rec.generation;
            let mut events = Vec::new();
            let mut idempotency = Vec::new();
            let mut keys = HashSet::new();
            let mut bytes_written = 0;
            for q in batch {
                if let Some(key) = &q.ctx.idempotency_key
                    && !keys.insert(key.as_str())
                {
                    // Two copies of one request: the later one waits for the first's reply.
                    results.push(Err(applied_concurrently()));
                    continue;
                }
                txn.begin(generation + 1);
                let planned = match self.plan_queued(&mut txn, &rec, q).await {
                    Ok(entries) => entries,
                    Err(e) => {
                        txn.abandon();
                        results.push(Err(e));
                        continue;
                    }
                };
                if !txn.section_changed() {
                    txn.settle();
                    results.push(Ok(Applied {
                        entries: planned,
                        generation,
                    }));
                    continue;
                }
                generation += 1;
                let applied = Applied {
                    entries: planned,
                    generation,
                };
                events.extend(txn.settle().into_iter().map(|h| NewEvent {
                    kind: h.kind.to_owned(),
                    path: Some(h.path.as_str().to_owned()),
                    to_path: h.to_path.map(|p| p.as_str().to_owned()),
                    related_id: None,
                    principal: q.ctx.principal.name.clone(),
                    generation,
                    time: now,
                }));
                idempotency.extend(self.idempotency(&q.ctx, (q.outcome)(&applied)));
                bytes_written += q.bytes_written;
                results.push(Ok(applied));
            }
            if generation == rec.generation {
                return Ok(results);
            }
            let (changes, _) = txn.into_changes();
            let commit = TreeCommit {
                tenant: rec.tenant.clone(),
                session: rec.id.clone(),
                expected_generation: rec.generation,
                generation,
                changes,
                events,
                idempotency,
                time: now,
                bytes_written,
            };
            match self.inner.meta.commit(commit).await? {
                CommitOutcome::Committed { .. } => {
                    self.notify(&rec.id);
                    return Ok(results);
                }
                CommitOutcome::GenerationMoved { .. } => continue,
                CommitOutcome::KeyRecorded => return Err(applied_concurrently()),
            }
        }
        Err(Error::new(
            Code::Aborted,
            format!(
                "session {} is being changed by too many writers; retry",
                match key {
                    TreeKey::Session(id) => id.as_str(),
                    TreeKey::Holder(_, id) => id.as_str(),
                }
            ),
        ))
    }

    /// Stages one caller's operations in `txn`, after the checks that are the caller's own.
    async fn plan_queued<R: aether_domain::tree::TreeRead>(
        &self,
        txn: &mut Txn<'_, R>,
        rec: &SessionRecord,
        q: &Queued,
    ) -> Result<Vec<Option<Entry>>> {
        if let TreeKey::Session(id) = &q.key
            && q.ctx.principal.tenant != rec.tenant
        {
            return Err(Error::not_found(format!("session {id} not found")));
        }
        rec.status.check_writable()?;
        let mut entries = Vec::with_capacity(q.ops.len());
        let mut patches = q.patches.iter();
        for op in &q.ops {
            let entry = match op {
                Some(op) => txn.apply(op).await?,
                None => {
                    let patch = patches
                        .next()
                        .ok_or_else(|| Error::internal("a patch went missing"))?;
                    let op = self.resolve_patch(txn, patch).await?;
                    txn.apply(&op).await?
                }
            };
            entries.push(entry);
        }
        Ok(entries)
    }

    async fn resolve_patch<R: aether_domain::tree::TreeRead>(
        &self,
        txn: &Txn<'_, R>,
        patch: &QueuedPatch,
    ) -> Result<Op> {
        let PatchPlan {
            path,
            expected_hash,
            create,
            ..
        } = &patch.plan;
        let current = txn.get(path).await?;
        let base = match &current {
            Some(e) => content_of(e, path)?,
            None if *create => None,
            None => return Err(Error::no_such_path(path.as_str())),
        };
        if !guard_holds(&patch.plan, base) {
            // Refused before the new content is built, as the write itself would refuse it.
            return Err(Error::hash_conflict(
                path.as_str(),
                base.map(|(hash, _)| hash.to_owned()),
            ));
        }
        let (hash, size) = self.patched(patch, base).await?;
        Ok(Op::WriteBlob {
            path: path.clone(),
            hash,
            size,
            mode: None,
            parents: false,
            expected_hash: expected_hash.clone(),
        })
    }

    /// Builds each patch's content on the session's current state before the mutation waits
    /// for the write lock: rebuilding a large file then holds up no other writer of the
    /// lock's shard. Under the lock the work is reused if the file has not changed meanwhile
    /// (the common case: one writer of the file); otherwise it is done again there. Anything
    /// that fails here is left for the locked attempt to report.
    async fn prepare_patches(&self, ctx: &Ctx, target: Target<'_>, patches: &[QueuedPatch]) {
        let Target::Session(id) = target else {
            return;
        };
        if patches.is_empty() {
            return;
        }
        let Ok(rec) = self.load(&ctx.principal, id).await else {
            return;
        };
        if rec.status.check_writable().is_err() {
            return;
        }
        let reader = StoreReader {
            meta: &self.inner.meta,
            tree: TreeRef::Session {
                tenant: rec.tenant.clone(),
                session: rec.id.clone(),
            },
        };
        for patch in patches {
            let path = &patch.plan.path;
            let current = aether_domain::tree::TreeRead::entry(&reader, path).await;
            let base = match &current {
                Ok(Some(e)) => match content_of(e, path) {
                    Ok(base) => base,
                    Err(_) => continue,
                },
                Ok(None) if patch.plan.create => None,
                _ => continue,
            };
            if !guard_holds(&patch.plan, base) {
                continue;
            }
            let _ = self.patched(patch, base).await;
        }
    }
}

/// Whether a patch's `expectedHash`, if it has one, is its base's hash.
fn guard_holds(plan: &PatchPlan, base: Option<(&str, u64)>) -> bool {
    plan.expected_hash
        .as_deref()
        .is_none_or(|expected| base.map(|(hash, _)| hash) == Some(expected))
}

/// The content a patch of `path` starts from: `(hash, size)`, or `None` for an empty file.
fn content_of<'e>(
    e: &'e Entry,
    path: &aether_domain::SessionPath,
) -> Result<Option<(&'e str, u64)>> {
    match e.kind {
        EntryKind::File => Ok(e.content_hash.as_deref().map(|h| (h, e.size))),
        EntryKind::Directory => Err(Error::is_a_directory(path.as_str())),
        kind => Err(Error::precondition(format!(
            "{path} is a {}, not a regular file",
            kind.as_str()
        ))),
    }
}

/// The answer to the later of two copies of one request: the earlier copy committed while this
/// one was planned, and a retry replays its reply.
pub(crate) fn applied_concurrently() -> Error {
    Error::unavailable(
        "a request with this Idempotency-Key was applied concurrently; retry it to receive its reply",
    )
}

pub(crate) fn shard_of(session_id: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    session_id.hash(&mut h);
    (h.finish() as usize) % crate::WRITE_LOCK_SHARDS
}

/// Sends each caller its result, in order.
fn answer(batch: Vec<Queued>, results: Vec<Result<Applied>>) {
    let mut results = results.into_iter();
    for q in batch {
        let _ = q.reply.send(results.next().unwrap_or_else(|| Err(lost())));
    }
}

/// The reply of a mutation whose writer stopped before answering it (the request that was
/// applying it went away mid-way): whether it committed is unknown.
fn lost() -> Error {
    Error::unavailable(
        "the server stopped applying this change before it could tell whether it was committed; \
         retry it with an Idempotency-Key to be sure it applies once",
    )
}
