//! Invalidation from the server's changefeed: another writer's change drops the affected names
//! and attributes from the engine's and the kernel's caches at once, instead of after a TTL.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aether_ports::local_cache::{LocalCache, MountClock};
use aether_ports::{Event, ListEventsRequest, PageRequest, SessionApi};
use futures::{FutureExt, StreamExt};

use crate::Engine;

impl<R, C, K> Engine<R, C, K>
where
    R: SessionApi + 'static,
    C: LocalCache,
    K: MountClock,
{
    /// Runs until `shutdown` completes: follows the session's events and invalidates what they
    /// name, reconnecting with the configured backoff.
    pub async fn run_changefeed(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown.fuse());
        let mut after = None;
        let mut failures = 0u32;
        loop {
            let attempt = self.follow(&mut after).fuse();
            futures::pin_mut!(attempt);
            let outcome = futures::select! {
                r = attempt => r,
                _ = shutdown => return,
            };
            match outcome {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(target: "aether_mount", error = %e.message, "changefeed interrupted; reconnecting");
                }
            }
            let wait = self.retry_delay(failures.max(1));
            futures::select! {
                _ = self.clock.sleep(wait).fuse() => {}
                _ = shutdown => return,
            }
        }
    }

    /// Catches up to the newest event (first time only), then follows new ones until the
    /// stream ends or fails.
    async fn follow(&self, after: &mut Option<u64>) -> aether_domain::Result<()> {
        let ctx = self.ctx();
        let sid = &self.config.session_id;
        if after.is_none() {
            // What happened before the mount started is already in the listings we load.
            let mut cursor = 0;
            loop {
                let req = ListEventsRequest {
                    after_sequence: Some(cursor),
                    page: PageRequest {
                        page_size: Some(aether_ports::model::MAX_PAGE_SIZE),
                        page_token: None,
                    },
                    ..Default::default()
                };
                let page = self.remote.list_events(&ctx, sid, req).await?;
                let Some(last) = page.items.last() else { break };
                cursor = last.sequence;
                // Changes made after the mount started may postdate a listing we loaded.
                let started = self.start_generation.load(Ordering::Relaxed);
                for e in page.items.iter().filter(|e| e.generation > started) {
                    self.on_event(e);
                }
                if page.items.len() < aether_ports::model::MAX_PAGE_SIZE as usize {
                    break;
                }
            }
            *after = Some(cursor);
        }
        let mut stream = self
            .remote
            .follow_events(&ctx, sid, after.unwrap_or(0))
            .await?;
        self.contact();
        while let Some(event) = stream.next().await {
            let event = event?;
            *after = Some(event.sequence);
            self.on_event(&event);
        }
        Ok(())
    }

    /// Applies one remote event to the caches (our own write-backs' echoes excepted).
    pub fn on_event(&self, event: &Event) {
        self.seen_generation
            .fetch_max(event.generation, Ordering::Relaxed);
        let paths: Vec<&str> = event
            .path
            .iter()
            .chain(event.to_path.iter())
            .map(String::as_str)
            .collect();
        let mut kernel_work = Vec::new();
        {
            let mut st = self.lock();
            let own = paths
                .iter()
                .all(|p| st.echoes.get(*p).is_some_and(|n| *n > 0));
            if own && !paths.is_empty() {
                for p in &paths {
                    if let Some(n) = st.echoes.get_mut(*p) {
                        *n -= 1;
                        if *n == 0 {
                            st.echoes.remove(*p);
                        }
                    }
                }
                return;
            }
            for path in paths {
                let (dir, name) = match path.rsplit_once('/') {
                    Some(("", name)) => ("/", name),
                    Some((dir, name)) => (dir, name),
                    None => continue,
                };
                let Some(parent) = st.nodes.resolve(dir) else {
                    continue;
                };
                if let Some(l) = st.nodes.get_mut(parent).and_then(|p| p.listing.as_mut()) {
                    l.kernel_cached = false;
                }
                if let Some(p) = st.nodes.get_mut(parent)
                    && p.pending == 0
                    && let Some(l) = p.listing.as_mut()
                {
                    l.fresh_until = Duration::ZERO;
                }
                st.negative.remove(&(parent, name.to_owned()));
                let child = st.nodes.child(parent, name);
                if let Some(c) = child
                    && let Some(n) = st.nodes.get_mut(c)
                    && n.pending == 0
                    && n.stage.is_none()
                {
                    n.attr_fresh_until = Duration::ZERO;
                    n.xattrs = None;
                    n.kernel_hash = None;
                    if let Some(l) = n.listing.as_mut() {
                        l.fresh_until = Duration::ZERO;
                    }
                }
                kernel_work.push((parent, name.to_owned(), child));
            }
        }
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        if let Some(k) = self.kernel() {
            for (parent, name, child) in kernel_work {
                k.invalidate_entry(parent, &name);
                // Drops the kernel's cached listing of the parent too.
                k.invalidate_inode(parent);
                if let Some(c) = child {
                    self.kernel_stores.invalidated(c);
                    k.invalidate_inode(c);
                }
            }
        }
    }
}
