//! Blobs of at most 64 KiB, kept as rows instead of files (or as files when another put holds
//! the table): read back in every way a blob is read, patched, collected after their grace
//! period, kept across a reopen, and blob files of that size left by earlier versions still
//! served.

use std::path::Path;
use std::time::Duration;

use aether_domain::tree::Segment;
use aether_ports::store::BlobStore;
use aether_store_sqlite::FileBlobStore;
use futures::StreamExt;

use crate::chunked::{patch, sha};

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every file under the shard directories (`00` … `ff`): blobs stored as files.
fn blob_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for shard in 0..=255u8 {
        let Ok(entries) = std::fs::read_dir(root.join(format!("{shard:02x}"))) else {
            continue;
        };
        out.extend(entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()));
    }
    out
}

async fn read_chunks(blobs: &FileBlobStore, hash: &str, range: Option<(u64, u64)>) -> Vec<u8> {
    let chunks: Vec<_> = blobs.get_chunks(hash, range).await.unwrap().collect().await;
    chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect()
}

#[tokio::test]
async fn a_small_blob_is_a_row_not_a_file_and_reads_back_every_way() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    for len in [0, 1, 4096, 64 << 10] {
        let data = content(len, 7);
        let hash = blobs.put(data.clone().into()).await.unwrap();
        assert_eq!(hash, sha(&data), "named by its SHA-256");
        assert_eq!(blobs.get(&hash, None).await.unwrap()[..], data[..]);
        assert_eq!(read_chunks(&blobs, &hash, None).await, data);
        if len > 10 {
            let part = (3, len as u64 - 2);
            assert_eq!(
                blobs.get(&hash, Some(part)).await.unwrap()[..],
                data[3..len - 2]
            );
            assert_eq!(
                read_chunks(&blobs, &hash, Some(part)).await,
                data[3..len - 2]
            );
        }
    }
    assert!(
        blob_files(dir.path()).is_empty(),
        "no blob file was written"
    );
    let larger = content((64 << 10) + 1, 9);
    let hash = blobs.put(larger.clone().into()).await.unwrap();
    assert_eq!(
        blob_files(dir.path()),
        vec![hash],
        "a larger blob is a file"
    );
    let (bytes, count) = blobs.disk_usage().unwrap();
    assert_eq!(count, 5);
    assert_eq!(bytes, (1 + 4096 + (64 << 10) + larger.len()) as u64);
}

#[tokio::test]
async fn small_blobs_outlive_the_store_that_wrote_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(5000, 1);
    let hash = {
        let blobs = FileBlobStore::open(dir.path(), true).unwrap();
        blobs.put(data.clone().into()).await.unwrap()
    };
    let blobs = FileBlobStore::open(dir.path(), true).unwrap();
    assert_eq!(blobs.get(&hash, None).await.unwrap()[..], data[..]);
}

#[tokio::test]
async fn the_collector_takes_an_idle_small_blob_and_a_later_put_stores_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    let data = content(300, 2);
    let hash = blobs.put(data.clone().into()).await.unwrap();
    let hour = Duration::from_secs(3600);
    assert!(blobs.idle(hour).await.unwrap().is_empty(), "just stored");
    assert!(!blobs.remove_if_idle(&hash, hour).await.unwrap());
    assert_eq!(
        blobs.idle(Duration::ZERO).await.unwrap(),
        vec![hash.clone()]
    );
    assert!(blobs.remove_if_idle(&hash, Duration::ZERO).await.unwrap());
    assert!(blobs.get(&hash, None).await.is_err(), "gone once collected");
    assert_eq!(blobs.disk_usage().unwrap(), (0, 0));
    // A reference on its way stores the content again, as with a blob file.
    assert_eq!(blobs.put(data.clone().into()).await.unwrap(), hash);
    assert_eq!(blobs.get(&hash, None).await.unwrap()[..], data[..]);
}

#[tokio::test]
async fn a_put_of_a_stored_small_blob_makes_it_recent_again() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    let data = content(100, 3);
    let hash = blobs.put(data.clone().into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let grace = Duration::from_millis(20);
    assert_eq!(blobs.idle(grace).await.unwrap(), vec![hash.clone()]);
    blobs.put(data.into()).await.unwrap();
    assert!(
        !blobs.remove_if_idle(&hash, grace).await.unwrap(),
        "a blob stored again within the grace period stays"
    );
    assert_eq!(blobs.disk_usage().unwrap().1, 1);
}

#[tokio::test]
async fn a_small_blob_file_from_an_earlier_version_is_read_touched_and_collected() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    let data = content(2000, 4);
    let hash = sha(&data);
    let path = dir.path().join(&hash[..2]).join(&hash);
    std::fs::write(&path, &data).unwrap();
    assert_eq!(blobs.get(&hash, None).await.unwrap()[..], data[..]);
    assert_eq!(blobs.put(data.clone().into()).await.unwrap(), hash);
    assert_eq!(
        blobs.disk_usage().unwrap(),
        (data.len() as u64, 1),
        "stored once: the file was touched, no row added"
    );
    assert!(blobs.remove_if_idle(&hash, Duration::ZERO).await.unwrap());
    assert!(!path.exists());
}

#[tokio::test]
async fn patches_of_small_blobs_stay_rows_until_they_grow_past_64_kib() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    let mut model = content(10_000, 5);
    let base = blobs.put(model.clone().into()).await.unwrap();
    let edit = |offset: u64, len: usize| Segment {
        offset,
        data: content(len, offset as u8),
    };
    let small = patch(
        &blobs,
        Some(&base),
        &mut model,
        vec![edit(9_000, 3_000)],
        None,
    )
    .await;
    assert!(blob_files(dir.path()).is_empty(), "a small result is a row");
    assert_eq!(blobs.get(&small, None).await.unwrap()[..], model[..]);
    // Grown past the row limit over a row's content: a chunked blob that reads back whole.
    let grown = patch(
        &blobs,
        Some(&small),
        &mut model,
        vec![edit(2, 10), edit(70_000, 100)],
        Some(200_000),
    )
    .await;
    assert_eq!(blob_files(dir.path()), vec![grown.clone()]);
    assert_eq!(read_chunks(&blobs, &grown, None).await, model);
    // Cut short again: a row once more, read from the chunked base.
    let cut = patch(&blobs, Some(&grown), &mut model, vec![], Some(60_000)).await;
    assert_eq!(blobs.get(&cut, None).await.unwrap()[..], model[..]);
    assert_eq!(blob_files(dir.path()).len(), 1, "the cut version is a row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_are_each_stored_as_a_row_or_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    let tasks: Vec<_> = (0..400u32)
        .map(|i| {
            let blobs = blobs.clone();
            tokio::spawn(async move {
                let data = content(1000 + i as usize, i as u8);
                let hash = blobs.put(data.clone().into()).await.unwrap();
                (hash, data)
            })
        })
        .collect();
    let mut stored = Vec::new();
    for t in tasks {
        stored.push(t.await.unwrap());
    }
    // A fresh store reads what the other acknowledged: every put was committed.
    drop(blobs);
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    for (hash, data) in &stored {
        assert_eq!(&blobs.get(hash, None).await.unwrap()[..], &data[..]);
    }
    assert_eq!(blobs.disk_usage().unwrap().1, 400);
}
