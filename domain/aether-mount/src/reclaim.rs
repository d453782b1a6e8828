//! Dropping nodes nobody can reach any more: a file or directory without a name that the
//! kernel has forgotten, that no handle holds and that no pending journal entry names.
//!
//! Inode numbers stay stable for the life of the mount because a node keeps its number as long
//! as it has a name. A node that lost its last name (deleted, or replaced by a rename) is kept
//! only while the kernel may still ask about it: the kernel counts the entries it was handed
//! (`lookup`, `create`, `readdirplus`, …) and sends `forget` when it drops them. Without this,
//! every temporary file a build, an editor or `git` ever made would stay in memory until the
//! mount ends. The number of a dropped node is never given out again.

use aether_ports::SessionApi;
use aether_ports::local_cache::{LocalCache, MountClock};
use aether_ports::vfs::{EntryOut, FsResult, ROOT_INO};

use crate::{Engine, State};

impl<R, C, K> Engine<R, C, K>
where
    R: SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    /// The entry for `ino` that a reply hands to the kernel, counted as one more reference.
    pub(crate) fn kernel_entry(&self, st: &mut State, ino: u64) -> FsResult<EntryOut> {
        let attr = self.attr_now(st, ino)?;
        if let Some(n) = st.nodes.get_mut(ino) {
            n.lookups += 1;
        }
        Ok(self.entry_out(attr))
    }

    /// Counts one more kernel reference to each of `inos`.
    pub(crate) fn remember_all(&self, inos: &[u64]) {
        let mut st = self.lock();
        for &ino in inos {
            if let Some(n) = st.nodes.get_mut(ino) {
                n.lookups += 1;
            }
        }
    }

    /// The kernel dropped `n` references to `ino`.
    pub(crate) fn forget_some(&self, ino: u64, n: u64) {
        let mut st = self.lock();
        let Some(node) = st.nodes.get_mut(ino) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups == 0 {
            self.reclaim_if_unreachable(&mut st, ino);
        }
    }

    /// Drops `ino` from the table if nothing can reach it any more.
    pub(crate) fn reclaim_if_unreachable(&self, st: &mut State, ino: u64) {
        if ino == ROOT_INO {
            return;
        }
        let Some(n) = st.nodes.get(ino) else {
            return;
        };
        let held = !n.links.is_empty()
            || n.lookups > 0
            || n.pending > 0
            || n.writers > 0
            || n.stage.is_some();
        if held
            || st.early.contains_key(&ino)
            || st.handles.values().any(|h| h.file_ino() == Some(ino))
        {
            return;
        }
        st.nodes.remove(ino);
    }

    /// [`Engine::reclaim_if_unreachable`] for each of `inos`.
    pub(crate) fn reclaim_all_unreachable(&self, st: &mut State, inos: &[u64]) {
        for &ino in inos {
            self.reclaim_if_unreachable(st, ino);
        }
    }
}
