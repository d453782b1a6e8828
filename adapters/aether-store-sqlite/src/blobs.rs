//! Content-addressed blob directory: `<root>/<aa>/<sha256>`, written via a temp file and an
//! atomic rename so a reader never sees a partial blob.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use aether_domain::tree::content_hash;
use aether_domain::{Error, Result};
use aether_ports::store::BlobStore;

#[derive(Clone)]
pub struct FileBlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    /// fsync blobs and their directory before acknowledging (power-loss durability).
    fsync: bool,
}

fn io(context: &str, e: std::io::Error) -> Error {
    Error::internal(format!("blob store failed to {context}: {e}"))
}

impl FileBlobStore {
    pub fn open(root: &Path, fsync: bool) -> Result<Self> {
        fs::create_dir_all(root.join("tmp")).map_err(|e| io("create its directory", e))?;
        Ok(FileBlobStore {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                fsync,
            }),
        })
    }

    fn path_of(root: &Path, hash: &str) -> Result<PathBuf> {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::internal(format!(
                "blob key {hash:?} is not a SHA-256 digest"
            )));
        }
        Ok(root.join(&hash[..2]).join(hash))
    }

    /// Total bytes and count of blobs on disk (for storage measurements).
    pub fn disk_usage(&self) -> Result<(u64, u64)> {
        let mut bytes = 0;
        let mut count = 0;
        for shard in fs::read_dir(&self.inner.root).map_err(|e| io("list blobs", e))? {
            let shard = shard.map_err(|e| io("list blobs", e))?;
            if shard.file_name() == "tmp" || !shard.path().is_dir() {
                continue;
            }
            for blob in fs::read_dir(shard.path()).map_err(|e| io("list blobs", e))? {
                let meta = blob
                    .and_then(|b| b.metadata())
                    .map_err(|e| io("stat a blob", e))?;
                bytes += meta.len();
                count += 1;
            }
        }
        Ok((bytes, count))
    }
}

fn put_blocking(inner: &Inner, data: &[u8]) -> Result<String> {
    let hash = content_hash(data);
    let dest = FileBlobStore::path_of(&inner.root, &hash)?;
    if dest.exists() {
        return Ok(hash);
    }
    let dir = dest
        .parent()
        .expect("a blob path always has a shard directory");
    fs::create_dir_all(dir).map_err(|e| io("create a shard directory", e))?;
    let mut tmp = tempfile_in(&inner.root.join("tmp"))?;
    tmp.1.write_all(data).map_err(|e| io("write a blob", e))?;
    if inner.fsync {
        tmp.1.sync_all().map_err(|e| io("sync a blob", e))?;
    }
    fs::rename(&tmp.0, &dest).map_err(|e| io("publish a blob", e))?;
    if inner.fsync {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("sync a shard directory", e))?;
    }
    Ok(hash)
}

fn tempfile_in(dir: &Path) -> Result<(PathBuf, fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{}-{n}", std::process::id()));
    let file = fs::File::create(&path).map_err(|e| io("create a temporary blob", e))?;
    Ok((path, file))
}

fn get_blocking(inner: &Inner, hash: &str, range: Option<(u64, u64)>) -> Result<Bytes> {
    let path = FileBlobStore::path_of(&inner.root, hash)?;
    let mut f = fs::File::open(&path).map_err(|e| io(&format!("open blob {hash}"), e))?;
    match range {
        None => {
            let mut buf = Vec::new();
            f.read_to_end(&mut buf).map_err(|e| io("read a blob", e))?;
            Ok(buf.into())
        }
        Some((start, end)) => {
            f.seek(SeekFrom::Start(start))
                .map_err(|e| io("seek in a blob", e))?;
            let mut buf = vec![0; (end - start) as usize];
            f.read_exact(&mut buf)
                .map_err(|e| io("read a blob range", e))?;
            Ok(buf.into())
        }
    }
}

impl BlobStore for FileBlobStore {
    async fn put(&self, data: Bytes) -> Result<String> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || put_blocking(&inner, &data))
            .await
            .map_err(|e| Error::internal(format!("blob write task failed: {e}")))?
    }

    async fn get(&self, hash: &str, range: Option<(u64, u64)>) -> Result<Bytes> {
        let (inner, hash) = (self.inner.clone(), hash.to_owned());
        tokio::task::spawn_blocking(move || get_blocking(&inner, &hash, range))
            .await
            .map_err(|e| Error::internal(format!("blob read task failed: {e}")))?
    }
}
