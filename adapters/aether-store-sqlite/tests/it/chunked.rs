//! Large blobs made by patches: stored as chunks shared with the version they were patched
//! from, read back as their whole content, and collected like any other blob.

use std::time::Duration;

use aether_domain::splice::splice;
use aether_domain::tree::Segment;
use aether_ports::store::BlobStore;
use aether_store_sqlite::FileBlobStore;
use bytes::Bytes;
use futures::StreamExt;
use sha2::Digest;

const MIB: u64 = 1 << 20;

/// A small deterministic generator (xorshift), so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

pub(crate) fn sha(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Applies a patch through the store and to `model`; returns the new blob's hash.
pub(crate) async fn patch(
    blobs: &FileBlobStore,
    base: Option<&str>,
    model: &mut Vec<u8>,
    segments: Vec<Segment>,
    truncate_to: Option<u64>,
) -> String {
    let layout = splice(model.len() as u64, &segments, truncate_to, 1 << 40).unwrap();
    let written: Vec<Bytes> = segments
        .iter()
        .map(|s| Bytes::from(s.data.clone()))
        .collect();
    let (hash, len) = blobs.put_spliced(base, &layout, &written).await.unwrap();
    *model = layout.assemble(model, &segments);
    assert_eq!(len, model.len() as u64);
    assert_eq!(
        hash,
        sha(model),
        "the blob is named by its content's SHA-256"
    );
    hash
}

/// A file that had no content, patched with `len` random bytes at `offset`: its blob and
/// content.
async fn written_anew(
    blobs: &FileBlobStore,
    rng: &mut Rng,
    offset: u64,
    len: u64,
) -> (String, Vec<u8>) {
    let mut model = Vec::new();
    let segment = Segment {
        offset,
        data: rng.bytes(len as usize),
    };
    let hash = patch(blobs, None, &mut model, vec![segment], None).await;
    (hash, model)
}

async fn read_all(blobs: &FileBlobStore, hash: &str) -> Vec<u8> {
    let chunks: Vec<_> = blobs.get_chunks(hash, None).await.unwrap().collect().await;
    chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect()
}

fn random_patch(rng: &mut Rng, len: u64) -> (Vec<Segment>, Option<u64>) {
    let mut segments = Vec::new();
    for _ in 0..=rng.below(3) {
        let size = match rng.below(4) {
            0 => rng.below(64) + 1,
            1 => rng.below(4096) + 1,
            2 => rng.below(MIB) + 1,
            _ => rng.below(3 * MIB) + 1,
        } as usize;
        // Mostly inside the file, sometimes at or past its end.
        let offset = rng.below(len + len / 4 + 1);
        segments.push(Segment {
            offset,
            data: rng.bytes(size),
        });
    }
    let truncate_to = match rng.below(8) {
        0 => Some(rng.below(len + 2 * MIB)),
        1 => Some(len - len % MIB), // exactly at a chunk boundary
        _ => None,
    };
    (segments, truncate_to)
}

async fn chains_of_patches(fsync: bool, seed: u64, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), fsync).unwrap();
    let mut rng = Rng(seed);
    let mut model = rng.bytes((3 * MIB + 12_345) as usize);
    let mut hash = blobs.put(model.clone().into()).await.unwrap();
    for round in 0..rounds {
        let (segments, truncate_to) = random_patch(&mut rng, model.len() as u64);
        hash = patch(&blobs, Some(&hash), &mut model, segments, truncate_to).await;
        assert_eq!(
            blobs.get(&hash, None).await.unwrap()[..],
            model[..],
            "seed {seed}, round {round}"
        );
        assert_eq!(
            read_all(&blobs, &hash).await,
            model,
            "seed {seed}, round {round}"
        );
        for _ in 0..4 {
            let len = model.len() as u64;
            let start = rng.below(len + 1);
            let end = start + rng.below(len - start + 1);
            let got = blobs.get(&hash, Some((start, end))).await.unwrap();
            assert_eq!(
                got[..],
                model[start as usize..end as usize],
                "seed {seed}, round {round}, range {start}..{end}"
            );
        }
    }
}

#[tokio::test]
async fn chains_of_random_patches_read_back_as_their_content() {
    for seed in 1..=6 {
        chains_of_patches(false, seed * 7919, 10).await;
    }
}

#[tokio::test]
async fn chains_of_random_patches_read_back_with_fsync_on() {
    chains_of_patches(true, 104_729, 4).await;
}

#[tokio::test]
async fn an_edit_of_a_large_blob_costs_the_disk_about_one_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    let mut rng = Rng(42);
    let mut model = rng.bytes((16 * MIB) as usize);
    let flat = blobs.put(model.clone().into()).await.unwrap();
    // The first patch of a whole upload rewrites it as chunks...
    let edit = |at: u64, rng: &mut Rng| Segment {
        offset: at,
        data: rng.bytes(100),
    };
    let first = patch(
        &blobs,
        Some(&flat),
        &mut model,
        vec![edit(5 * MIB, &mut rng)],
        None,
    )
    .await;
    let (before, _) = blobs.disk_usage().unwrap();
    // ...and each later one adds only the chunks it changed.
    let mut hash = first;
    for at in [9 * MIB + 17, 0, 16 * MIB - 50] {
        hash = patch(
            &blobs,
            Some(&hash),
            &mut model,
            vec![edit(at, &mut rng)],
            None,
        )
        .await;
    }
    let (after, count) = blobs.disk_usage().unwrap();
    assert_eq!(count, 5, "five versions are stored");
    assert!(
        after - before <= 3 * (MIB + 4096),
        "three one-chunk edits took {} bytes",
        after - before
    );
    // Every version still reads as its own content.
    assert_eq!(read_all(&blobs, &hash).await, model);
    assert_eq!(sha(&read_all(&blobs, &flat).await), flat);
}

#[tokio::test]
async fn an_edit_of_a_database_sized_blob_costs_the_disk_one_small_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    let mut rng = Rng(17);
    let mut model = rng.bytes((3 * MIB) as usize);
    let flat = blobs.put(model.clone().into()).await.unwrap();
    let page = |at: u64, rng: &mut Rng| Segment {
        offset: at,
        data: rng.bytes(4096),
    };
    let mut hash = patch(
        &blobs,
        Some(&flat),
        &mut model,
        vec![page(0, &mut rng)],
        None,
    )
    .await;
    // Each later edit of one page adds one 64 KiB chunk and the index (32 bytes a chunk)...
    let edits_cost = |before: u64, after: u64, chunks: u64| {
        assert!(
            after - before <= 3 * (64 * 1024 + 64 + 32 * chunks),
            "three one-page edits took {} bytes",
            after - before
        );
    };
    let (before, _) = blobs.disk_usage().unwrap();
    for at in [MIB + 5, 2 * MIB, 12_288] {
        hash = patch(
            &blobs,
            Some(&hash),
            &mut model,
            vec![page(at, &mut rng)],
            None,
        )
        .await;
    }
    edits_cost(before, blobs.disk_usage().unwrap().0, 48);
    // ...also once the file grew past the size that starts with small chunks, as a database
    // does: it keeps them rather than being rewritten in large ones.
    let grown = patch(
        &blobs,
        Some(&hash),
        &mut model,
        vec![page(6 * MIB - 4096, &mut rng)],
        None,
    )
    .await;
    let (before, _) = blobs.disk_usage().unwrap();
    hash = grown;
    for at in [5 * MIB, 4096, 3 * MIB + 1] {
        hash = patch(
            &blobs,
            Some(&hash),
            &mut model,
            vec![page(at, &mut rng)],
            None,
        )
        .await;
    }
    edits_cost(before, blobs.disk_usage().unwrap().0, 96);
    assert_eq!(read_all(&blobs, &hash).await, model);
}

#[tokio::test]
async fn the_collector_leaves_a_chunked_blob_being_read_and_takes_it_after() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    let mut rng = Rng(7);
    let mut model = rng.bytes((4 * MIB) as usize);
    let flat = blobs.put(model.clone().into()).await.unwrap();
    let hash = patch(
        &blobs,
        Some(&flat),
        &mut model,
        vec![Segment {
            offset: 4 * MIB,
            data: rng.bytes(1000),
        }],
        None,
    )
    .await;
    assert!(blobs.remove_if_idle(&flat, Duration::ZERO).await.unwrap());
    let mut reading = blobs.get_chunks(&hash, None).await.unwrap();
    let first = reading.next().await.unwrap().unwrap();
    assert!(
        !blobs.remove_if_idle(&hash, Duration::ZERO).await.unwrap(),
        "a blob being read is not collected"
    );
    let rest: Vec<u8> = reading.map(|c| c.unwrap().to_vec()).concat().await;
    assert_eq!([first.to_vec(), rest].concat(), model);
    assert!(blobs.remove_if_idle(&hash, Duration::ZERO).await.unwrap());
    assert!(blobs.get(&hash, None).await.is_err());
    assert_eq!(
        blobs.disk_usage().unwrap(),
        (0, 0),
        "nothing is left on the disk"
    );
}

#[tokio::test]
async fn collecting_one_version_leaves_the_chunks_another_shares() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    let mut rng = Rng(99);
    let mut model = rng.bytes((5 * MIB) as usize);
    let flat = blobs.put(model.clone().into()).await.unwrap();
    let v1 = patch(&blobs, Some(&flat), &mut model, vec![], Some(5 * MIB + 1)).await;
    let mut v2_model = model.clone();
    let v2 = patch(
        &blobs,
        Some(&v1),
        &mut v2_model,
        vec![Segment {
            offset: 3,
            data: vec![1, 2, 3],
        }],
        None,
    )
    .await;
    for old in [&flat, &v1] {
        assert!(blobs.remove_if_idle(old, Duration::ZERO).await.unwrap());
    }
    assert_eq!(read_all(&blobs, &v2).await, v2_model);
    assert_eq!(blobs.disk_usage().unwrap().1, 1);
}

#[tokio::test]
async fn a_whole_upload_of_a_chunked_blobs_content_is_the_same_blob() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    let (hash, model) = written_anew(&blobs, &mut Rng(5), 0, 2 * MIB + 3).await;
    assert_eq!(blobs.put(model.clone().into()).await.unwrap(), hash);
    let stream = aether_ports::body::one_chunk(model.clone().into());
    assert_eq!(
        blobs.put_stream(stream).await.unwrap(),
        (hash.clone(), model.len() as u64)
    );
    assert_eq!(
        blobs.disk_usage().unwrap().1,
        1,
        "one blob, in its chunked form"
    );
    assert_eq!(read_all(&blobs, &hash).await, model);
}

#[tokio::test]
async fn a_damaged_chunk_index_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    let (hash, _) = written_anew(&blobs, &mut Rng(11), 10, 3 * MIB).await;
    let index = dir.path().join(&hash[..2]).join(&hash).join("index");
    std::fs::write(&index, b"not an index").unwrap();
    let err = blobs.get(&hash, None).await.unwrap_err();
    assert!(
        err.to_string().contains("damaged chunk index"),
        "unexpected error: {err}"
    );
}

#[tokio::test]
async fn a_chunked_blob_left_half_built_by_a_crash_is_swept_once_idle() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = FileBlobStore::open(dir.path(), false).unwrap();
    // What a server killed in the middle of building a chunked blob leaves behind.
    let leftover = dir.path().join("tmp").join(".tmp-4242-7");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join("00000000"), vec![1u8; 4096]).unwrap();
    assert!(
        blobs
            .idle(Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(leftover.exists(), "not swept while it may still be in use");
    blobs.idle(Duration::ZERO).await.unwrap();
    assert!(!leftover.exists(), "swept once idle");
}
