//! The bytes of a whole-file write: small ones in memory, large ones as a stream of chunks so
//! that neither the client, the server nor the blob store ever holds a large file whole.

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::Result;

/// Chunks of a file's content, in order; an `Err` ends the upload and fails the write.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send + 'static>>;

/// Bytes already held whole, as a stream of one chunk.
pub fn one_chunk(data: Bytes) -> ByteStream {
    Box::pin(futures::stream::iter([Ok(data)]))
}

/// Zeros are handed out in runs of at most this many bytes.
const ZERO_RUN: usize = 1 << 20;
static ZEROS: [u8; ZERO_RUN] = [0; ZERO_RUN];

/// `n` zero bytes as runs of at most 1 MiB, none of them allocated.
pub fn zero_runs(n: u64) -> impl Iterator<Item = Bytes> + Send {
    (0..n)
        .step_by(ZERO_RUN)
        .map(move |at| Bytes::from_static(&ZEROS[..(n - at).min(ZERO_RUN as u64) as usize]))
}

/// What a write stores as the file's new content.
pub enum FileBody {
    Bytes(Bytes),
    /// `len` is the exact total when known (it becomes the HTTP `Content-Length`).
    Stream {
        len: Option<u64>,
        chunks: ByteStream,
    },
}

impl FileBody {
    pub fn stream(
        len: Option<u64>,
        chunks: impl Stream<Item = Result<Bytes>> + Send + 'static,
    ) -> Self {
        FileBody::Stream {
            len,
            chunks: Box::pin(chunks),
        }
    }

    /// The total length, if known before reading.
    pub fn len_hint(&self) -> Option<u64> {
        match self {
            FileBody::Bytes(b) => Some(b.len() as u64),
            FileBody::Stream { len, .. } => *len,
        }
    }

    /// Reads the whole body into memory (for stores that keep content in memory anyway).
    pub async fn collect(self) -> Result<Bytes> {
        match self {
            FileBody::Bytes(b) => Ok(b),
            FileBody::Stream { len, mut chunks } => {
                let mut all = Vec::with_capacity(len.unwrap_or(0).min(64 << 20) as usize);
                while let Some(chunk) = chunks.next().await {
                    all.extend_from_slice(&chunk?);
                }
                Ok(all.into())
            }
        }
    }

    /// The body as a stream, whichever form it has.
    pub fn into_stream(self) -> ByteStream {
        match self {
            FileBody::Bytes(b) => one_chunk(b),
            FileBody::Stream { chunks, .. } => chunks,
        }
    }
}

impl fmt::Debug for FileBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileBody::Bytes(b) => write!(f, "FileBody::Bytes({} bytes)", b.len()),
            FileBody::Stream { len, .. } => write!(f, "FileBody::Stream(len {len:?})"),
        }
    }
}

impl From<Bytes> for FileBody {
    fn from(b: Bytes) -> Self {
        FileBody::Bytes(b)
    }
}

impl From<Vec<u8>> for FileBody {
    fn from(v: Vec<u8>) -> Self {
        FileBody::Bytes(v.into())
    }
}

impl From<&'static [u8]> for FileBody {
    fn from(s: &'static [u8]) -> Self {
        FileBody::Bytes(Bytes::from_static(s))
    }
}

impl From<&'static str> for FileBody {
    fn from(s: &'static str) -> Self {
        FileBody::Bytes(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for FileBody {
    fn from(s: String) -> Self {
        FileBody::Bytes(s.into())
    }
}
