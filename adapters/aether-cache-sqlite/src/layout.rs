//! The per-session directory layout of SPEC 5.2, created with mode 0700 throughout.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aether_ports::local_cache::CacheError;

/// `<cache_dir>/<session>/content/{blobs,staging,dirty,index,shared,locks}`.
#[derive(Debug, Clone)]
pub struct SessionLayout {
    pub root: PathBuf,
    pub blobs: PathBuf,
    pub staging: PathBuf,
    pub dirty: PathBuf,
    pub index: PathBuf,
    pub shared: PathBuf,
    pub locks: PathBuf,
}

/// Creates `dir` (and missing parents) private to the owner; tightens an existing one.
pub fn ensure_private_dir(dir: &Path) -> Result<(), CacheError> {
    let fail = |e: std::io::Error| {
        CacheError::Backend(format!(
            "cannot create the directory {}: {e}",
            dir.display()
        ))
    };
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
    }
    let mode = fs::metadata(dir).map_err(fail)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    Ok(())
}

impl SessionLayout {
    /// The layout of `session` under `cache_dir`, without touching the disk.
    pub fn of(cache_dir: &Path, session: &str) -> SessionLayout {
        let content = cache_dir.join(session).join("content");
        SessionLayout {
            blobs: content.join("blobs"),
            staging: content.join("staging"),
            dirty: content.join("dirty"),
            index: content.join("index"),
            shared: content.join("shared"),
            locks: content.join("locks"),
            root: content,
        }
    }

    pub fn create(cache_dir: &Path, session: &str) -> Result<SessionLayout, CacheError> {
        if session.is_empty() || session.contains(['/', '\0']) || session.starts_with('.') {
            return Err(CacheError::Backend(format!(
                "{session:?} cannot name a cache directory"
            )));
        }
        let layout = SessionLayout::of(cache_dir, session);
        ensure_private_dir(cache_dir)?;
        ensure_private_dir(&cache_dir.join(session))?;
        for dir in [
            &layout.root,
            &layout.blobs,
            &layout.staging,
            &layout.dirty,
            &layout.index,
            &layout.shared,
            &layout.locks,
        ] {
            ensure_private_dir(dir)?;
        }
        // Staging areas and temporaries do not outlive the runtime that made them; what
        // matters was committed to blobs and the journal.
        for dir in [&layout.staging, &layout.dirty] {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(layout)
    }
}

/// Number of files and their total size under `dir` (two levels, as the blob store is). A
/// file under several names (a blob kept under its local name and the server's) counts once.
pub(crate) fn walk_size(dir: &Path) -> (u64, u64) {
    fn walk(dir: &Path, seen: &mut HashSet<(u64, u64)>, total: &mut (u64, u64)) {
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                walk(&entry.path(), seen, total);
            } else if seen.insert((meta.dev(), meta.ino())) {
                total.0 += 1;
                total.1 += meta.len();
            }
        }
    }
    let mut total = (0, 0);
    walk(dir, &mut HashSet::new(), &mut total);
    total
}
