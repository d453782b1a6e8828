//! Filling the kernel's page cache: when the last writer of a small file closes it, the engine
//! hands the file's content to the kernel, so the next reader reads it without a request here.
//!
//! Without this, a file written past the page cache (`direct_io`, see `starts_over_write_only`)
//! or ending in a partly written page (most small files: the kernel can only keep whole pages it
//! was given) costs its next reader a `READ` round trip, and each such read also marks the
//! file's access time stale, so the next `stat` of it costs a `GETATTR` too. `git add` after a
//! copy, `grep` after `git add`, a linker after a compiler: the next reader is the common case.
//!
//! A store reaches the kernel after the engine has decided on it and let go of its lock (the
//! kernel may have to wait for a read in flight, whose answer needs that lock). Two things may
//! happen in between:
//! - a local writer changes the file: the kernel would then put the older, stored content over
//!   the newer write. Every local change of content starts with an `open` for writing or a
//!   truncation, and both wait here until the file's stores are done;
//! - the changefeed invalidates the file: its invalidation could reach the kernel first, and
//!   the store would bring back what it dropped. Such a file is invalidated again once its
//!   store is done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aether_ports::SessionApi;
use aether_ports::local_cache::{LocalCache, MountClock};

use crate::{Engine, State};

/// Files up to this size are stored in the kernel's cache at their last close; larger ones
/// are read through the usual read-ahead, where a round trip per MiB matters little.
pub(crate) const STORE_AT_CLOSE_MAX: u64 = 128 << 10;

/// Stores on their way to the kernel, by inode.
#[derive(Default)]
pub(crate) struct KernelStores {
    pending: Mutex<HashMap<u64, Pending>>,
    settled: tokio::sync::Notify,
}

#[derive(Default)]
struct Pending {
    stores: usize,
    /// The changefeed invalidated the file meanwhile.
    invalidated: bool,
}

/// The content of one file, decided on under the engine lock, for [`Engine::send_to_kernel`].
pub(crate) struct KernelStore {
    ino: u64,
    content: Vec<u8>,
}

impl KernelStores {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sent(&self, ino: u64) {
        self.pending().entry(ino).or_default().stores += 1;
    }

    /// Notes that the kernel is told to drop what it holds of `ino`.
    pub(crate) fn invalidated(&self, ino: u64) {
        if let Some(p) = self.pending().get_mut(&ino) {
            p.invalidated = true;
        }
    }

    /// Marks one store of `ino` done; true if the file must be invalidated again.
    fn done(&self, ino: u64) -> bool {
        let mut pending = self.pending();
        let Some(p) = pending.get_mut(&ino) else {
            return false;
        };
        p.stores -= 1;
        let invalidated = p.invalidated;
        if p.stores == 0 {
            pending.remove(&ino);
        }
        drop(pending);
        self.settled.notify_waiters();
        invalidated
    }
}

impl<R, C, K> Engine<R, C, K>
where
    R: SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    /// Once nobody writes `ino` any more, decides to hand its content to the kernel's page
    /// cache if it is small and was written in this open (its staging area is still here,
    /// committed). The caller sends it with [`Engine::send_to_kernel`] after letting go of
    /// the lock.
    pub(crate) fn store_in_kernel(&self, st: &mut State, ino: u64) -> Option<KernelStore> {
        self.kernel()?;
        let n = st.nodes.get_mut(ino)?;
        let committed = n.stage.as_ref().is_some_and(|s| !s.dirty);
        let size = n.attr.size;
        if n.writers > 0 || !committed || size == 0 || size > STORE_AT_CLOSE_MAX {
            return None;
        }
        let hash = n.hash.clone()?;
        // A staging area that cannot be read back is not worth failing a close over: the
        // next reader simply asks.
        let content = self.cache.stage_read(ino, 0, size as usize).ok()?;
        if content.len() as u64 != size {
            return None;
        }
        n.kernel_hash = Some(hash);
        self.kernel_stores.sent(ino);
        Some(KernelStore { ino, content })
    }

    /// Sends a store decided by [`Engine::store_in_kernel`]; never under the engine lock.
    pub(crate) fn send_to_kernel(&self, store: KernelStore) {
        let Some(kernel) = self.kernel.get() else {
            return;
        };
        let stores = Arc::clone(&self.kernel_stores);
        let again = Arc::clone(kernel);
        let ino = store.ino;
        kernel.store(
            ino,
            store.content,
            Box::new(move || {
                if stores.done(ino) {
                    again.invalidate_inode(ino);
                }
            }),
        );
    }

    /// Waits until no store of `ino`'s content is on its way to the kernel: a writer that went
    /// ahead could see the older, stored content land over what it writes.
    pub(crate) async fn kernel_stores_settled(&self, ino: u64) {
        loop {
            // Registered before the check, so a store finishing in between still wakes us.
            let settled = self.kernel_stores.settled.notified();
            if !self.kernel_stores.pending().contains_key(&ino) {
                return;
            }
            settled.await;
        }
    }
}
