//! Nodes without a name are dropped once the kernel forgot them and the server has the change:
//! a mount that creates and deletes files all day keeps a table the size of its tree.

use aether_ports::vfs::*;

use crate::{ME, RO, RW, World, write_back, write_new};

fn inodes(e: &crate::TestEngine) -> u64 {
    e.status().inodes
}

#[tokio::test]
async fn a_deleted_file_is_dropped_once_forgotten_and_written_back() {
    let w = World::new().await;
    let e = w.mount().await;
    let before = inodes(&e);
    // `create` hands the kernel one reference.
    let f = write_new(&e, ROOT_INO, "tmp_obj", b"scratch").await;
    e.unlink(ROOT_INO, b"tmp_obj").await.unwrap();
    assert_eq!(inodes(&e), before + 1, "the kernel still holds it");
    e.forget(f, 1);
    assert_eq!(
        inodes(&e),
        before + 1,
        "the journal still names it: kept until the server has the delete"
    );
    write_back(&e).await;
    assert_eq!(inodes(&e), before, "dropped");
    assert!(matches!(e.getattr(f).await, Err(FsError::NotFound(_))));
    assert_eq!(w.server_read("/tmp_obj").await, None);

    // In the other order: written back first, forgotten after.
    let g = write_new(&e, ROOT_INO, "other", b"x").await;
    e.unlink(ROOT_INO, b"other").await.unwrap();
    write_back(&e).await;
    assert_eq!(inodes(&e), before + 1);
    e.forget(g, 1);
    assert_eq!(inodes(&e), before);
}

#[tokio::test]
async fn a_file_with_a_name_is_kept_whatever_the_kernel_forgets() {
    let w = World::new().await;
    let e = w.mount().await;
    let f = write_new(&e, ROOT_INO, "kept", b"content").await;
    write_back(&e).await;
    e.forget(f, 1);
    e.forget(f, 5);
    let again = e.lookup(ROOT_INO, b"kept").await.unwrap();
    assert_eq!(again.attr.ino, f, "the same inode number for the same path");
    assert_eq!(crate::read_whole(&*e, f, 100).await, b"content");
}

#[tokio::test]
async fn a_deleted_file_still_open_is_kept_until_its_last_release() {
    let w = World::new().await;
    let e = w.mount().await;
    let before = inodes(&e);
    let f = write_new(&e, ROOT_INO, "held", b"still readable").await;
    let reader = e.open(f, RO).await.unwrap();
    e.unlink(ROOT_INO, b"held").await.unwrap();
    write_back(&e).await;
    e.forget(f, 1);
    assert_eq!(
        e.read(f, reader.fh, 0, 100).await.unwrap(),
        b"still readable"
    );
    assert_eq!(inodes(&e), before + 1);
    e.release(f, reader.fh).await.unwrap();
    assert_eq!(inodes(&e), before, "dropped at the last release");
}

#[tokio::test]
async fn entries_sent_in_a_listing_count_as_references_too() {
    let w = World::new().await;
    let e = w.mount().await;
    let before = inodes(&e);
    let f = write_new(&e, ROOT_INO, "listed", b"x").await;
    let dir = e.opendir(ROOT_INO).await.unwrap();
    let entries = e.readdir(ROOT_INO, dir.fh, 0).await.unwrap();
    let sent: Vec<u64> = entries
        .iter()
        .filter(|d| d.name != "." && d.name != "..")
        .map(|d| d.entry.attr.ino)
        .collect();
    assert_eq!(sent, [f]);
    e.remember(&sent);
    e.releasedir(ROOT_INO, dir.fh);
    e.unlink(ROOT_INO, b"listed").await.unwrap();
    write_back(&e).await;
    e.forget(f, 1);
    assert_eq!(inodes(&e), before + 1, "one reference left");
    e.forget(f, 1);
    assert_eq!(inodes(&e), before);
}

#[tokio::test]
async fn a_file_replaced_by_a_rename_is_dropped_and_the_replacement_keeps_its_number() {
    let w = World::new().await;
    let e = w.mount().await;
    let before = inodes(&e);
    let old = write_new(&e, ROOT_INO, "config", b"old").await;
    let new = write_new(&e, ROOT_INO, "config.tmp", b"new").await;
    e.rename(
        ROOT_INO,
        b"config.tmp",
        ROOT_INO,
        b"config",
        RenameMode::Replace,
    )
    .await
    .unwrap();
    write_back(&e).await;
    e.forget(old, 1);
    assert_eq!(inodes(&e), before + 1);
    assert_eq!(e.lookup(ROOT_INO, b"config").await.unwrap().attr.ino, new);
    assert_eq!(w.server_read("/config").await.as_deref(), Some(&b"new"[..]));
}

#[tokio::test]
async fn a_removed_directory_is_dropped_once_forgotten() {
    let w = World::new().await;
    let e = w.mount().await;
    let before = inodes(&e);
    let d = e
        .mkdir(ME, ROOT_INO, b"build", 0o755)
        .await
        .unwrap()
        .attr
        .ino;
    let (entry, open) = e.create(ME, d, b"out.o", 0o644, RW).await.unwrap();
    e.release(entry.attr.ino, open.fh).await.unwrap();
    e.unlink(d, b"out.o").await.unwrap();
    e.rmdir(ROOT_INO, b"build").await.unwrap();
    write_back(&e).await;
    e.forget(entry.attr.ino, 1);
    e.forget(d, 1);
    assert_eq!(inodes(&e), before);
}
