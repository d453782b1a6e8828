//! Content the server names: large content written through the mount is not hashed here.
//!
//! The server hashes every upload to store it, so a second SHA-256 pass in the mount over a
//! large file only names it for the local cache, at a cost that dominated the mount's CPU on
//! large writes. Content larger than [`HASHED_MAX`] (which always travels to the server alone,
//! never in a batch) is instead committed under a [`LocalName`]; when the server acknowledges
//! the journal entry, its reply names the content, and the blob, the node and any stage based
//! on it take the server's name ([`Engine::server_named`]). Smaller content is hashed as it is
//! written, as before: it travels in batches, whose replies name nothing.
//!
//! A local name never reaches the server: a patch whose base content has only a local name is
//! sent whole instead. After a crash the journal still names content locally; the replay sends
//! it whole, and the listing brings the server's name back.

use aether_ports::Entry;
use aether_ports::local_cache::{LocalCache, LocalName, MountClock};

use crate::content_id::ContentId;
use crate::{Engine, State};

/// The largest content the mount hashes itself; larger content is named by the server.
pub(crate) const HASHED_MAX: u64 = 256 << 10;

/// At most this many server names of local content are remembered for later patches (each one
/// matters only until the entries journaled before the server named it are written back).
const SERVER_NAMES_KEPT: usize = 1024;

impl<R, C, K> Engine<R, C, K>
where
    R: aether_ports::SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    /// A fresh local name for content being committed (the caller records it in
    /// `State::local_names` once the content is journaled).
    pub(crate) fn local_name(&self, st: &mut State) -> String {
        let nanos = u64::try_from(self.clock.now().0).unwrap_or(0);
        loop {
            st.next_local = st.next_local.wrapping_add(1);
            let name = LocalName::make(nanos, st.next_local);
            // A remount of the same cache could meet a name from before (a clock set back).
            if !self.cache.has_blob(&name) {
                return name;
            }
        }
    }

    /// The server stored `size` bytes named `name` in the journal, and replied with `entry`.
    /// When `name` is local, the content takes the server's name. Returns false if the reply
    /// cannot be the content the journal holds (an early upload is then sent again, whole).
    pub(crate) fn server_named(&self, name: &str, size: u64, entry: &Entry) -> bool {
        if !LocalName::is(name) {
            let same = entry.content_hash.as_deref() == Some(name);
            if !same {
                tracing::error!(target: "aether_mount", path = entry.path, expected = name, stored = ?entry.content_hash, "the server stored other content than the journal holds");
            }
            return same;
        }
        let Some(hash) = entry.content_hash.clone().filter(|_| entry.size == size) else {
            tracing::error!(target: "aether_mount", path = entry.path, expected_size = size, stored_size = entry.size, "the server stored other content than the journal holds");
            return false;
        };
        if let Err(e) = self.cache.blob_name(name, &hash) {
            // The server holds the content: the next reader fetches it again, nothing is lost.
            tracing::warn!(target: "aether_mount", local = name, hash, error = %e, "could not keep written content under the server's name");
        }
        let mut st = self.lock();
        if st.server_names.len() >= SERVER_NAMES_KEPT {
            st.server_names.clear();
        }
        st.server_names.insert(name.to_owned(), hash.clone());
        let Some(ino) = st.local_names.remove(name) else {
            return true;
        };
        let Some(n) = st.nodes.get_mut(ino) else {
            return true;
        };
        let (local, named) = (ContentId::new(name), ContentId::new(&hash));
        for slot in [&mut n.hash, &mut n.kernel_hash] {
            if slot.as_ref() == Some(&local) {
                *slot = Some(named.clone());
            }
        }
        if let Some(stage) = n
            .stage
            .as_mut()
            .filter(|s| s.base_hash.as_deref() == Some(name))
        {
            stage.base_hash = Some(hash);
        }
        true
    }

    /// The name the server knows content `name` by, if it has one: `name` itself when it is a
    /// hash, the server's hash once it named local content.
    pub(crate) fn server_name_of(&self, name: &str) -> Option<String> {
        if !LocalName::is(name) {
            return Some(name.to_owned());
        }
        self.lock().server_names.get(name).cloned()
    }
}
