//! Garbage collection of blobs: a blob no entry references, idle for the grace period, is
//! deleted. The grace period must exceed the time between a write storing (or touching) a blob
//! and its commit; the blob store's remove-if-idle closes the remaining race.

use std::time::Duration;

use aether_domain::Result;
use aether_ports::store::{BlobStore, Environment, MetadataStore};

use crate::Service;

/// What one collection pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Idle blobs looked at.
    pub examined: usize,
    /// Blobs deleted.
    pub removed: usize,
}

const CHUNK: usize = 512;

impl<M: MetadataStore, B: BlobStore, E: Environment> Service<M, B, E> {
    /// One pass over the blob store.
    pub async fn collect_garbage(&self, grace: Duration) -> Result<GcReport> {
        let idle = self.inner.blobs.idle(grace).await?;
        let mut report = GcReport {
            examined: idle.len(),
            removed: 0,
        };
        for chunk in idle.chunks(CHUNK) {
            let referenced = self.inner.meta.referenced_blobs(chunk).await?;
            let mut removed = Vec::new();
            for hash in chunk.iter().filter(|h| !referenced.contains(*h)) {
                if self.inner.blobs.remove_if_idle(hash, grace).await? {
                    removed.push(hash.clone());
                }
            }
            report.removed += removed.len();
            self.inner.meta.forget_blobs(&removed).await?;
        }
        Ok(report)
    }
}
