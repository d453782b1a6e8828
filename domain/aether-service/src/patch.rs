//! A partial write's new content: built in memory for small files, handed to the blob store as
//! a layout over the old blob for large ones (so the server never holds a large file whole, and
//! a store may share the unchanged parts), and remembered per base
//! content, so that the work is done before the session's write lock is taken and a re-planned
//! commit does not do it again.

use std::sync::Mutex;

use aether_domain::splice::splice;
use aether_domain::{Error, Result};
use aether_ports::plan::PatchPlan;
use aether_ports::store::{BlobStore, Environment, MetadataStore};
use bytes::Bytes;

use crate::Service;

/// Content up to this size is patched in memory: one read and one write of a small blob.
const IN_MEMORY: u64 = 1 << 20;

/// The content one patch produced from one base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The base's content hash (`None`: empty or absent).
    pub(crate) base: Option<String>,
    pub(crate) hash: String,
    pub(crate) size: u64,
}

/// A queued patch and the content it last produced.
pub(crate) struct QueuedPatch {
    pub(crate) plan: PatchPlan,
    memo: Mutex<Option<Resolved>>,
}

impl QueuedPatch {
    pub(crate) fn new(plan: PatchPlan) -> Self {
        QueuedPatch {
            plan,
            memo: Mutex::new(None),
        }
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, Option<Resolved>> {
        self.memo.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<M: MetadataStore, B: BlobStore, E: Environment> Service<M, B, E> {
    /// The patched content's hash and size over the base `(hash, size)`, from the memo when it
    /// was built on this same base.
    pub(crate) async fn patched(
        &self,
        patch: &QueuedPatch,
        base: Option<(&str, u64)>,
    ) -> Result<(String, u64)> {
        let base_hash = base.map(|(h, _)| h.to_owned());
        if let Some(r) = patch.memo().as_ref().filter(|r| r.base == base_hash) {
            return Ok((r.hash.clone(), r.size));
        }
        let (hash, size) = self.build_patched(&patch.plan, base).await?;
        *patch.memo() = Some(Resolved {
            base: base_hash,
            hash: hash.clone(),
            size,
        });
        Ok((hash, size))
    }

    async fn build_patched(
        &self,
        plan: &PatchPlan,
        base: Option<(&str, u64)>,
    ) -> Result<(String, u64)> {
        let base_len = base.map_or(0, |(_, len)| len);
        let layout = splice(
            base_len,
            &plan.segments,
            plan.truncate_to,
            self.inner.limits.max_file_bytes,
        )?;
        if layout.len.max(base_len) <= IN_MEMORY {
            let old = match base {
                Some((hash, _)) => self.inner.blobs.get(hash, None).await?,
                None => Bytes::new(),
            };
            if old.len() as u64 != base_len {
                return Err(mismatch(plan, base_len, old.len() as u64));
            }
            let new = layout.assemble(&old, &plan.segments);
            let size = new.len() as u64;
            return Ok((self.inner.blobs.put(new.into()).await?, size));
        }
        let expected = layout.len;
        let written: Vec<Bytes> = plan
            .segments
            .iter()
            .map(|s| Bytes::copy_from_slice(&s.data))
            .collect();
        let base_hash = base.map(|(h, _)| h);
        let (hash, size) = self
            .inner
            .blobs
            .put_spliced(base_hash, &layout, &written)
            .await?;
        if size != expected {
            return Err(mismatch(plan, expected, size));
        }
        Ok((hash, size))
    }
}

/// The rebuilt content came out at a length the layout did not predict: the base blob is not
/// the size its entry says.
fn mismatch(plan: &PatchPlan, expected: u64, got: u64) -> Error {
    Error::internal(format!(
        "patching {}: the rebuilt content is {got} bytes, expected {expected}; its stored content does not match its entry",
        plan.path
    ))
}
