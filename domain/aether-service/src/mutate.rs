//! The one write path: plan operations in a `Txn` over the current generation, store content
//! first, then commit atomically with events and the idempotency record; re-plan if another
//! writer moved the generation in between.

use aether_domain::tree::{Op, Txn, apply_segments};
use aether_domain::{Code, Entry, EntryKind, Error, Result, Scope};
use aether_ports::plan::{PatchPlan, Planned};
use aether_ports::store::{
    BlobStore, CommitOutcome, Environment, MetadataStore, NewEvent, TreeCommit, TreeRef,
};
use aether_ports::{Ctx, FileBody, Outcome};

use crate::Service;
use crate::reader::StoreReader;

const MAX_ATTEMPTS: usize = 16;

/// Which tree a mutation changes: a session named by a caller, or a source's holder.
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    Session(&'a str),
    Holder(&'a aether_domain::TenantId, &'a aether_domain::SessionId),
}

impl Target<'_> {
    fn id(&self) -> &str {
        match self {
            Target::Session(id) => id,
            Target::Holder(_, id) => id.as_str(),
        }
    }
}

/// What a successful mutation produced: one optional entry per operation, and the generation.
pub(crate) struct Applied {
    pub(crate) entries: Vec<Option<Entry>>,
    pub(crate) generation: u64,
}

impl<M: MetadataStore, B: BlobStore, E: Environment> Service<M, B, E> {
    /// Applies `planned` atomically. `outcome` turns the result into what a retry with the same
    /// idempotency key must replay.
    pub(crate) async fn mutate(
        &self,
        ctx: &Ctx,
        session_id: &str,
        planned: Vec<Planned>,
        outcome: impl Fn(&Applied) -> Outcome,
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
        outcome: impl Fn(&Applied) -> Outcome,
    ) -> Result<Applied> {
        let session_id = target.id();
        let mut ops = Vec::with_capacity(planned.len());
        let mut bytes_written = 0u64;
        let mut patches = Vec::new();
        for (i, p) in planned.into_iter().enumerate() {
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
                    patches.push((i, patch));
                }
            }
        }
        let shard = shard_of(session_id);
        let _guard = self.inner.write_locks[shard].lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let rec = match target {
                Target::Session(id) => self.load(&ctx.principal, id).await?,
                Target::Holder(tenant, id) => self
                    .inner
                    .meta
                    .session(tenant, id)
                    .await?
                    .ok_or_else(|| Error::internal(format!("source tree {id} is missing")))?,
            };
            rec.status.check_writable()?;
            let reader = StoreReader {
                meta: &self.inner.meta,
                tree: TreeRef::Session {
                    tenant: rec.tenant.clone(),
                    session: rec.id.clone(),
                },
            };
            let now = self.inner.env.now();
            let mut txn = Txn::new(&reader, now, rec.generation + 1);
            // Patches read the current content, so they are resolved against this attempt's state.
            for (i, patch) in &patches {
                ops[*i] = Some(self.resolve_patch(&txn, patch).await?);
            }
            let mut entries = Vec::with_capacity(ops.len());
            for op in ops.iter().flatten() {
                entries.push(txn.apply(op).await?);
            }
            let generation = txn.generation();
            let (changes, happened) = txn.into_changes();
            if changes.is_empty() {
                return Ok(Applied {
                    entries,
                    generation: rec.generation,
                });
            }
            let applied = Applied {
                entries,
                generation,
            };
            let events = happened
                .into_iter()
                .map(|h| NewEvent {
                    kind: h.kind.to_owned(),
                    path: Some(h.path.as_str().to_owned()),
                    to_path: h.to_path.map(|p| p.as_str().to_owned()),
                    related_id: None,
                    principal: ctx.principal.name.clone(),
                    generation,
                    time: now,
                })
                .collect();
            let commit = TreeCommit {
                tenant: rec.tenant.clone(),
                session: rec.id.clone(),
                expected_generation: rec.generation,
                changes,
                events,
                idempotency: self.idempotency(ctx, outcome(&applied)),
                time: now,
                bytes_written,
            };
            match self.inner.meta.commit(commit).await? {
                CommitOutcome::Committed { .. } => {
                    self.notify(&rec.id);
                    return Ok(applied);
                }
                CommitOutcome::GenerationMoved { .. } => continue,
                CommitOutcome::KeyRecorded => return Err(applied_concurrently()),
            }
        }
        Err(Error::new(
            Code::Aborted,
            format!("session {session_id} is being changed by too many writers; retry"),
        ))
    }

    async fn resolve_patch<R: aether_domain::tree::TreeRead>(
        &self,
        txn: &Txn<'_, R>,
        patch: &PatchPlan,
    ) -> Result<Op> {
        let PatchPlan {
            path,
            segments,
            truncate_to,
            expected_hash,
            create,
        } = patch;
        let current = txn.get(path).await?;
        let content = match &current {
            Some(e) if e.kind == EntryKind::Directory => {
                return Err(Error::is_a_directory(path.as_str()));
            }
            Some(e) if e.kind != EntryKind::File => {
                return Err(Error::precondition(format!(
                    "{path} is a {}, not a regular file",
                    e.kind.as_str()
                )));
            }
            Some(e) => match &e.content_hash {
                Some(h) => self.inner.blobs.get(h, None).await?.to_vec(),
                None => Vec::new(),
            },
            None if *create => Vec::new(),
            None => return Err(Error::no_such_path(path.as_str())),
        };
        let patched = apply_segments(
            content,
            segments,
            *truncate_to,
            self.inner.limits.max_file_bytes,
        )?;
        let size = patched.len() as u64;
        let hash = self.inner.blobs.put(patched.into()).await?;
        Ok(Op::WriteBlob {
            path: path.clone(),
            hash,
            size,
            mode: None,
            parents: false,
            expected_hash: expected_hash.clone(),
        })
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
