//! A large file's patch is rebuilt before the session's write lock is taken: while it is being
//! rebuilt, other writes to the session go through.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use aether_fakes::MemoryBlobStore;
use aether_ports::store::BlobStore;
use aether_ports::{
    ByteRange, ByteStream, ContentApi, CreateSessionRequest, Empty, PatchSegmentsRequest,
    ReadFileRequest, Result, Segment, SessionsApi, WriteFileRequest,
};

/// Blob writes of large content wait at a gate, once armed, until the test opens it.
#[derive(Clone)]
struct Gated {
    blobs: MemoryBlobStore,
    armed: Arc<AtomicBool>,
    /// One permit per write that reached the gate.
    arrived: Arc<Semaphore>,
    gate: Arc<Semaphore>,
}

impl Gated {
    fn new() -> Self {
        Gated {
            blobs: MemoryBlobStore::default(),
            armed: Arc::default(),
            arrived: Arc::new(Semaphore::new(0)),
            gate: Arc::new(Semaphore::new(0)),
        }
    }

    async fn hold(&self) {
        if self.armed.load(Ordering::SeqCst) {
            self.arrived.add_permits(1);
            if let Ok(permit) = self.gate.acquire().await {
                permit.forget();
            }
        }
    }
}

impl BlobStore for Gated {
    async fn idle(&self, grace: Duration) -> Result<Vec<String>> {
        self.blobs.idle(grace).await
    }
    async fn remove_if_idle(&self, hash: &str, grace: Duration) -> Result<bool> {
        self.blobs.remove_if_idle(hash, grace).await
    }
    async fn put(&self, data: Bytes) -> Result<String> {
        if data.len() > 1 << 20 {
            self.hold().await;
        }
        self.blobs.put(data).await
    }
    async fn put_stream(&self, chunks: ByteStream) -> Result<(String, u64)> {
        self.hold().await;
        self.blobs.put_stream(chunks).await
    }
    async fn usage(&self) -> Result<(u64, u64)> {
        self.blobs.usage().await
    }
    async fn get(&self, hash: &str, range: Option<(u64, u64)>) -> Result<Bytes> {
        self.blobs.get(hash, range).await
    }
    async fn get_chunks(&self, hash: &str, range: Option<(u64, u64)>) -> Result<ByteStream> {
        self.blobs.get_chunks(hash, range).await
    }
}

fn write(path: &str, data: Vec<u8>) -> WriteFileRequest {
    WriteFileRequest {
        path: path.into(),
        data: data.into(),
        mode: None,
        parents: true,
        expected_hash: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_writes_go_through_while_a_large_patch_is_rebuilt() {
    let blobs = Gated::new();
    let api = aether_fakes::fake_api_with_blobs(blobs.clone());
    let owner = crate::ctx("11111111-1111-1111-1111-111111111111", "owner");
    let s = api
        .create_session(
            &owner,
            CreateSessionRequest {
                empty: Some(Empty {}),
                ..Default::default()
            },
        )
        .await
        .expect("session");
    api.write_file(&owner, &s.id, write("/big", vec![1u8; 2 << 20]))
        .await
        .expect("write the large file");

    blobs.armed.store(true, Ordering::SeqCst);
    let patch = tokio::spawn({
        let (api, owner, id) = (api.clone(), owner.clone(), s.id.clone());
        async move {
            let edit = Segment {
                offset: 10,
                data: b"edit".to_vec(),
            };
            api.patch_segments(
                &owner,
                &id,
                PatchSegmentsRequest {
                    path: "/big".into(),
                    segments: vec![edit],
                    truncate_to: None,
                    expected_hash: None,
                    create: false,
                },
            )
            .await
        }
    });
    tokio::time::timeout(Duration::from_secs(10), blobs.arrived.acquire())
        .await
        .expect("the patch's content reaches the blob store")
        .expect("semaphore")
        .forget();

    // The patch's content is held at the gate; a write of another file must not wait for it.
    let other = tokio::time::timeout(
        Duration::from_secs(10),
        api.write_file(&owner, &s.id, write("/small", b"small".to_vec())),
    )
    .await;
    blobs.gate.add_permits(1 << 20);
    assert!(
        other.is_ok(),
        "a write waited for another writer's patch to be rebuilt"
    );
    other.unwrap().expect("the other write");

    let patched = patch.await.expect("patch task").expect("patch");
    assert_eq!(patched.size, 2 << 20);
    let data = api
        .read_file(
            &owner,
            &s.id,
            ReadFileRequest {
                path: "/big".into(),
                range: Some(ByteRange::From {
                    start: 8,
                    end_inclusive: Some(15),
                }),
            },
        )
        .await
        .expect("read")
        .data;
    assert_eq!(&data[..], b"\x01\x01edit\x01\x01");
}
