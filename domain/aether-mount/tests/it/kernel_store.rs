//! Small files go into the kernel's page cache when their last writer closes them, and a new
//! writer waits until that store is done.

use std::sync::{Arc, Mutex};

use aether_ports::vfs::{KernelNotifier, OpenIn, ROOT_INO, Stored, Vfs};

use crate::{ME, RO, RW, TestEngine, World, deliver_events, write_new};

/// One store the kernel was asked for, not finished yet.
type Held = (u64, Vec<u8>, Stored);

/// A kernel that records stores and finishes them only when told, and records the inodes it
/// is told to invalidate.

#[derive(Clone, Default)]
struct HeldStores(Arc<Mutex<Vec<Held>>>, Arc<Mutex<Vec<u64>>>);

impl HeldStores {
    /// Finishes the stores held so far, and returns what they stored.
    fn taken(&self) -> Vec<(u64, Vec<u8>)> {
        self.taken_if(|_| true)
    }

    /// Finishes the held stores of the inodes `which` picks, and returns what they stored.
    fn taken_if(&self, which: impl Fn(u64) -> bool) -> Vec<(u64, Vec<u8>)> {
        let mut held = self.0.lock().unwrap();
        let (now, later): (Vec<Held>, Vec<Held>) = std::mem::take(&mut *held)
            .into_iter()
            .partition(|h| which(h.0));
        *held = later;
        drop(held);
        now.into_iter()
            .map(|(ino, content, stored)| {
                stored();
                (ino, content)
            })
            .collect()
    }

    fn waiting(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    fn invalidations_of(&self, ino: u64) -> usize {
        self.1.lock().unwrap().iter().filter(|i| **i == ino).count()
    }
}

impl KernelNotifier for HeldStores {
    fn invalidate_entry(&self, _parent: u64, _name: &str) {}
    fn invalidate_inode(&self, ino: u64) {
        self.1.lock().unwrap().push(ino);
    }
    fn store(&self, ino: u64, content: Vec<u8>, stored: Stored) {
        self.0.lock().unwrap().push((ino, content, stored));
    }
}

/// A mounted engine attached to a [`HeldStores`] kernel.
async fn mounted() -> (World, Arc<TestEngine>, HeldStores) {
    let w = World::new().await;
    let e = w.mount().await;
    let kernel = HeldStores::default();
    e.attach_kernel(Box::new(kernel.clone()));
    (w, e, kernel)
}

#[tokio::test]
async fn a_small_file_is_stored_in_the_kernels_cache_when_its_last_writer_closes() {
    let (_w, e, kernel) = mounted().await;
    let wo = OpenIn {
        write: true,
        read: false,
        ..RW
    };
    // Written past the kernel's cache (write-only, created): stored at release.
    let (entry, h) = e.create(ME, ROOT_INO, b"out.o", 0o644, wo).await.unwrap();
    let f = entry.attr.ino;
    assert!(h.direct_io);
    e.write(f, h.fh, 0, b"object code").await.unwrap();
    e.flush(f, h.fh).await.unwrap();
    assert_eq!(kernel.waiting(), 0, "flush alone stores nothing");
    e.release(f, h.fh).await.unwrap();
    assert_eq!(kernel.taken(), vec![(f, b"object code".to_vec())]);
    let r = e.open(f, RO).await.unwrap();
    assert!(r.keep_cache, "the kernel holds the content now");
    e.release(f, r.fh).await.unwrap();
    assert_eq!(kernel.waiting(), 0, "a reader's close stores nothing");

    // With two writers, only the last close stores, and what it stores is the final content.
    let a = e.open(f, RW).await.unwrap();
    let b = e.open(f, RW).await.unwrap();
    e.write(f, a.fh, 0, b"OBJECT").await.unwrap();
    e.release(f, a.fh).await.unwrap();
    assert_eq!(kernel.waiting(), 0, "another writer still has it open");
    e.write(f, b.fh, 0, b"Object").await.unwrap();
    e.release(f, b.fh).await.unwrap();
    assert_eq!(kernel.taken(), vec![(f, b"Object code".to_vec())]);

    // Empty files and files past the limit are left to the reader.
    write_new(&e, ROOT_INO, "empty", b"").await;
    write_new(&e, ROOT_INO, "large", &vec![7u8; 128 * 1024 + 1]).await;
    assert_eq!(kernel.waiting(), 0);
    let at_limit = write_new(&e, ROOT_INO, "at-limit", &vec![7u8; 128 * 1024]).await;
    assert_eq!(kernel.taken(), vec![(at_limit, vec![7u8; 128 * 1024])]);
}

#[tokio::test]
async fn a_writer_waits_until_the_store_of_the_files_content_is_done() {
    let (_w, e, kernel) = mounted().await;
    let f = write_new(&e, ROOT_INO, "notes.txt", b"v1").await;
    assert_eq!(kernel.waiting(), 1);

    // Readers do not wait.
    let r = e.open(f, RO).await.unwrap();
    e.release(f, r.fh).await.unwrap();

    // A writer, and a truncation by path, wait for the store.
    let mut open = Box::pin(e.open(f, RW));
    assert!(futures::poll!(&mut open).is_pending(), "open for writing");
    let mut truncate = Box::pin(e.setattr(
        f,
        None,
        aether_ports::vfs::SetAttrIn {
            size: Some(0),
            ..Default::default()
        },
    ));
    assert!(futures::poll!(&mut truncate).is_pending(), "truncate");
    assert_eq!(kernel.taken(), vec![(f, b"v1".to_vec())]);
    let h = open.await.unwrap();
    truncate.await.unwrap();
    e.write(f, h.fh, 0, b"v2").await.unwrap();
    e.release(f, h.fh).await.unwrap();
    assert_eq!(kernel.taken(), vec![(f, b"v2".to_vec())]);
    assert_eq!(crate::read_whole(&*e, f, 16).await, b"v2");
}

/// The changefeed's invalidation of a file may reach the kernel before a store of its older
/// content decided earlier: the file is invalidated once more after the store.
#[tokio::test]
async fn a_file_invalidated_while_its_store_is_on_the_way_is_invalidated_again_after_it() {
    let (w, e, kernel) = mounted().await;
    let f = write_new(&e, ROOT_INO, "shared.txt", b"mine").await;
    let g = write_new(&e, ROOT_INO, "other.txt", b"mine too").await;
    assert_eq!(kernel.waiting(), 2);
    for path in ["/shared.txt", "/other.txt"] {
        w.server_write(path, b"theirs").await;
    }
    // `other.txt`'s store is done before its event arrives; `shared.txt`'s is not.
    kernel.taken_if(|ino| ino == g);
    deliver_events(&w, &e).await;
    assert_eq!(kernel.invalidations_of(f), 1, "by the changefeed");
    assert_eq!(kernel.invalidations_of(g), 1, "by the changefeed");
    kernel.taken();
    assert_eq!(kernel.invalidations_of(f), 2, "again, after the store");
    assert_eq!(kernel.invalidations_of(g), 1, "its store came first");
}
