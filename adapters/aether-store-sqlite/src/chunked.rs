//! Chunked blobs. A blob made by patching another is stored as a directory `<aa>/<sha256>/` of
//! chunk files, which are hard links to the old blob's chunks wherever the patch left a whole
//! chunk alone, plus an `index` holding the chunk size and the SHA-256 state before each chunk.
//! A patch then writes only the chunks it changed and hashes only from the first of them on,
//! and each version costs the disk only what it changed.
//!
//! A reader holds a shared `flock` on the directory for as long as it reads; the collector
//! takes it exclusively (without waiting) before deleting, so a blob being read is never
//! taken from under its reader.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};

use aether_domain::splice::{Piece, Splice};

use crate::midstate::{self, State};

/// Chunk sizes (multiples of SHA-256's block). A patch writes, and syncs, each chunk it
/// touches whole, and a version links every chunk it keeps: small chunks make an edit of a
/// database page cheap, large ones keep a large file's versions to a few links each.
const SMALL_CHUNK: u64 = 64 << 10;
const LARGE_CHUNK: u64 = 1 << 20;
/// Content up to this size is cut into small chunks (at most 64 of them, 128 past the boundary),
/// larger content into large ones.
const SMALL_CHUNKS_UP_TO: u64 = 4 << 20;

/// The chunk size of a patch's result of `len` bytes over a base cut into `base` chunks (if
/// it is chunked). The base's size is kept while it stays within twice the boundary either
/// way, so a file whose size moves about the boundary is not rewritten whole on each crossing.
pub(crate) fn chunk_size(len: u64, base: Option<u64>) -> u64 {
    match base {
        Some(SMALL_CHUNK) if len <= 2 * SMALL_CHUNKS_UP_TO => SMALL_CHUNK,
        Some(LARGE_CHUNK) if len > SMALL_CHUNKS_UP_TO / 2 => LARGE_CHUNK,
        _ if len <= SMALL_CHUNKS_UP_TO => SMALL_CHUNK,
        _ => LARGE_CHUNK,
    }
}
const INDEX: &str = "index";
const MAGIC: &[u8; 8] = b"AFSCHNK1";

/// A chunked blob's index: its chunk size, length, and the hash's state before each chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    pub(crate) chunk: u64,
    pub(crate) len: u64,
    pub(crate) states: Vec<State>,
}

impl Index {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + 32 * self.states.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.chunk.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        for s in &self.states {
            out.extend_from_slice(&midstate::to_bytes(s));
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Index, String> {
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        if bytes.get(..8) != Some(MAGIC.as_slice()) {
            return Err("it does not start with the chunked-blob mark".into());
        }
        let (Some(chunk), Some(len)) = (word(8), word(16)) else {
            return Err("it is cut short".into());
        };
        if chunk == 0 || chunk % midstate::BLOCK as u64 != 0 {
            return Err(format!("its chunk size {chunk} is not a multiple of 64"));
        }
        let count = len.div_ceil(chunk);
        let states = &bytes[24..];
        if states.len() as u64 != 32 * count {
            return Err(format!(
                "it holds {} bytes of hash states for {count} chunks",
                states.len()
            ));
        }
        let states = states
            .chunks_exact(32)
            .map(|b| midstate::from_bytes(b.try_into().expect("32-byte chunks")))
            .collect();
        Ok(Index { chunk, len, states })
    }

    fn count(&self) -> u64 {
        self.states.len() as u64
    }

    /// `[start, end)` of chunk `i`.
    fn span(&self, i: u64) -> (u64, u64) {
        (i * self.chunk, ((i + 1) * self.chunk).min(self.len))
    }
}

fn chunk_name(i: u64) -> String {
    format!("{i:08x}")
}

fn errno(e: rustix::io::Errno) -> io::Error {
    e.into()
}

/// An open chunked blob, held against the collector until dropped.
#[derive(Debug)]
pub(crate) struct Chunked {
    dir: OwnedFd,
    pub(crate) index: Index,
}

impl Chunked {
    /// Takes a directory already opened: locks it, then reads its index. The collector
    /// deletes the index first, so a blob it is deleting (or deleted) reads as not found.
    pub(crate) fn from_dir(dir: OwnedFd) -> io::Result<Chunked> {
        rustix::fs::flock(&dir, FlockOperation::LockShared).map_err(errno)?;
        let index = open_at(&dir, INDEX)?;
        let bytes = read_all(&fs::File::from(index))?;
        let index = Index::decode(&bytes).map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("damaged chunk index: {why}"),
            )
        })?;
        Ok(Chunked { dir, index })
    }

    pub(crate) fn len(&self) -> u64 {
        self.index.len
    }

    fn chunk(&self, i: u64) -> io::Result<fs::File> {
        open_at(&self.dir, &chunk_name(i)).map(fs::File::from)
    }

    /// Fills `buf` from offset `at`, across chunks as needed.
    pub(crate) fn read_exact_at(&self, mut buf: &mut [u8], mut at: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let i = at / self.index.chunk;
            let within = at - i * self.index.chunk;
            let (start, end) = self.index.span(i);
            if i >= self.index.count() || at >= end {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the end of a chunked blob",
                ));
            }
            let n = ((end - start - within) as usize).min(buf.len());
            let (now, rest) = buf.split_at_mut(n);
            self.chunk(i)?.read_exact_at(now, within)?;
            buf = rest;
            at += n as u64;
        }
        Ok(())
    }

    /// Every chunk file's (inode, size): for measuring the disk the store really uses.
    pub(crate) fn chunk_files(path: &Path) -> io::Result<Vec<(u64, u64, u64)>> {
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        for e in fs::read_dir(path)? {
            let m = e?.metadata()?;
            out.push((m.ino(), m.nlink(), m.len()));
        }
        Ok(out)
    }
}

fn open_at(dir: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).map_err(errno)
}

fn read_all(f: &fs::File) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    (&*f).read_to_end(&mut out)?;
    Ok(out)
}

/// What a patch starts from.
pub(crate) enum Base {
    Empty,
    Memory(Bytes),
    Flat(fs::File),
    Chunked(Chunked),
}

/// Fills `buf` from offset `at` of `data`, or fails as a file read past its end would.
fn read_from_memory(data: &[u8], buf: &mut [u8], at: u64) -> io::Result<()> {
    let start = usize::try_from(at).unwrap_or(usize::MAX);
    match data.get(start..start.saturating_add(buf.len())) {
        Some(part) => {
            buf.copy_from_slice(part);
            Ok(())
        }
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "read past the end of a blob",
        )),
    }
}

impl Base {
    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> io::Result<()> {
        match self {
            Base::Empty => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "a patch kept content of a file that had none",
            )),
            Base::Memory(data) => read_from_memory(data, buf, at),
            Base::Flat(f) => f.read_exact_at(buf, at),
            Base::Chunked(c) => c.read_exact_at(buf, at),
        }
    }

    /// The chunk size of the base, if it is chunked.
    fn chunk(&self) -> Option<u64> {
        match self {
            Base::Chunked(c) => Some(c.index.chunk),
            _ => None,
        }
    }

    /// The base's chunk `i`, when the new content (cut into `chunk`s) has it unchanged: same
    /// size and span, and one piece of the layout keeps all of it from the base.
    fn unchanged_chunk(
        &self,
        layout: &Placed,
        i: u64,
        span: (u64, u64),
        chunk: u64,
    ) -> Option<&Chunked> {
        let Base::Chunked(c) = self else { return None };
        if c.index.chunk != chunk || i >= c.index.count() || c.index.span(i) != span {
            return None;
        }
        layout.kept_from_base(span).then_some(c)
    }
}

/// The layout's pieces with the offset each starts at in the new content.
struct Placed<'a> {
    starts: Vec<u64>,
    pieces: &'a [Piece],
}

impl<'a> Placed<'a> {
    fn new(layout: &'a Splice) -> Self {
        let mut at = 0;
        let starts = layout
            .pieces
            .iter()
            .map(|p| {
                let start = at;
                at += match *p {
                    Piece::Base { start, end } => end - start,
                    Piece::Segment { start, end, .. } => (end - start) as u64,
                    Piece::Zeros(n) => n,
                };
                start
            })
            .collect();
        Placed {
            starts,
            pieces: &layout.pieces,
        }
    }

    /// Index of the piece covering offset `at`.
    fn at(&self, at: u64) -> usize {
        self.starts.partition_point(|&s| s <= at) - 1
    }

    fn kept_from_base(&self, (start, end): (u64, u64)) -> bool {
        matches!(self.pieces[self.at(start)], Piece::Base { start: s, end: e } if s <= start && end <= e)
    }

    /// Writes the new content's `[start, start + buf.len())` into `buf` (zeroed by the caller).
    fn fill(&self, base: &Base, written: &[Bytes], buf: &mut [u8], start: u64) -> io::Result<()> {
        let end = start + buf.len() as u64;
        let mut i = self.at(start);
        while i < self.pieces.len() && self.starts[i] < end {
            let p_start = self.starts[i];
            let from = start.max(p_start);
            let to = match self.starts.get(i + 1) {
                Some(&next) => next.min(end),
                None => end,
            };
            let out = &mut buf[(from - start) as usize..(to - start) as usize];
            match self.pieces[i] {
                // A kept range sits at the same offset in the old content.
                Piece::Base { .. } => base.read_exact_at(out, from)?,
                Piece::Segment {
                    index, start: s, ..
                } => {
                    let skip = s + (from - p_start) as usize;
                    out.copy_from_slice(&written[index][skip..skip + out.len()]);
                }
                Piece::Zeros(_) => {}
            }
            i += 1;
        }
        Ok(())
    }
}

/// A built blob, not yet published: its directory under the store's `tmp`.
pub(crate) struct Built {
    pub(crate) dir: PathBuf,
    pub(crate) hash: String,
    pub(crate) len: u64,
}

/// Builds the chunked blob `layout` describes over `base`, in a new directory under `tmp`.
/// Chunks the layout keeps whole from a chunked base are linked, not written; hashing resumes
/// at the first chunk that changed. On an error the directory is removed.
pub(crate) fn build(
    tmp: &Path,
    name: &str,
    base: &Base,
    layout: &Splice,
    written: &[Bytes],
    fsync: bool,
) -> io::Result<Built> {
    let dir = tmp.join(name);
    fs::create_dir(&dir)?;
    let mut discard = RemoveOnDrop(Some(dir.clone()));
    let dir_fd = rustix::fs::open(
        &dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;

    let placed = Placed::new(layout);
    let len = layout.len;
    let chunk_len = chunk_size(len, base.chunk());
    let count = len.div_ceil(chunk_len);
    let spans: Vec<(u64, u64)> = (0..count)
        .map(|i| (i * chunk_len, ((i + 1) * chunk_len).min(len)))
        .collect();
    let kept: Vec<Option<&Chunked>> = (0..count)
        .map(|i| base.unchanged_chunk(&placed, i, spans[i as usize], chunk_len))
        .collect();
    // The hash resumes from the base's state before the first changed chunk: every chunk
    // before it is the same bytes at the same place.
    let first_changed = kept.iter().position(Option::is_none).unwrap_or(kept.len()) as u64;
    let (resume_at, mut state) = match base {
        Base::Chunked(c) if first_changed > 0 => {
            // At the latest, the last chunk of either: the base has no state past its own,
            // and the new content's last chunk must be hashed to end the hash.
            let at = first_changed.min(c.index.count() - 1).min(count - 1);
            (at, c.index.states[at as usize])
        }
        _ => (0, midstate::INITIAL),
    };

    let mut states = Vec::with_capacity(count as usize);
    let mut fresh = Vec::new();
    let mut digest = midstate::finish(midstate::INITIAL, &[], 0);
    let mut buf = vec![0u8; chunk_len as usize];
    for i in 0..count {
        let (start, end) = spans[i as usize];
        let chunk = &mut buf[..(end - start) as usize];
        let name = chunk_name(i);
        let linked = match kept[i as usize] {
            Some(c) => match rustix::fs::linkat(&c.dir, &name, &dir_fd, &name, AtFlags::empty()) {
                Ok(()) => true,
                // A chunk shared by as many versions as the file system allows links: copied.
                Err(rustix::io::Errno::MLINK) => false,
                Err(e) => return Err(errno(e)),
            },
            None => false,
        };
        let hashed = i >= resume_at;
        if linked {
            if hashed {
                base.read_exact_at(chunk, start)?;
            }
        } else {
            chunk.fill(0);
            placed.fill(base, written, chunk, start)?;
            let mut f = fs::File::from(
                rustix::fs::openat(
                    &dir_fd,
                    &name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .map_err(errno)?,
            );
            f.write_all(chunk)?;
            fresh.push(name);
        }
        if !hashed {
            // Before the resume point the bytes are the base's, and so are the states.
            let Base::Chunked(c) = base else {
                unreachable!("hashing resumes past the start only over a chunked base")
            };
            states.push(c.index.states[i as usize]);
            continue;
        }
        states.push(state);
        if i + 1 < count {
            midstate::absorb(&mut state, chunk);
        } else {
            digest = midstate::finish(state, chunk, len);
        }
    }

    let index = Index {
        chunk: chunk_len,
        len,
        states,
    };
    let mut f = fs::File::create(dir.join(INDEX))?;
    f.write_all(&index.encode())?;
    if fsync {
        f.sync_all()?;
        for name in &fresh {
            fs::File::from(open_at(&dir_fd, name)?).sync_all()?;
        }
        rustix::fs::fsync(&dir_fd).map_err(errno)?;
    }
    discard.0 = None;
    Ok(Built {
        dir,
        hash: hex::encode(digest),
        len,
    })
}

/// Removes a directory tree when dropped, unless disarmed.
pub(crate) struct RemoveOnDrop(pub(crate) Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// Deletes a chunked blob's directory unless a reader holds it: the index goes first, so a
/// reader that opened the directory just before reads it as not found. False when held.
pub(crate) fn remove_unless_read(path: &Path) -> io::Result<bool> {
    let dir = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    match rustix::fs::flock(&dir, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => return Ok(false),
        Err(e) => return Err(errno(e)),
    }
    match rustix::fs::unlinkat(dir.as_fd(), INDEX, AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(errno(e)),
    }
    fs::remove_dir_all(path)?;
    Ok(true)
}
