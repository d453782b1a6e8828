//! Host importer (adapter layer): implements the `Importer` port by walking a directory on the
//! server's host, or a clone of a git repository or bundle made with the `git` command. Host
//! paths are confined to the configured import roots.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;

use futures::Future;

use aether_domain::{Error, Result};
use aether_ports::sources::{ImportItem, ImportOrigin, ImportStream};
use aether_ports::store::Importer;

/// Items in flight between the walking thread and the import.
const DEPTH: usize = 64;

/// Imports from the host, reading only below `roots` (no host path at all when empty).
#[derive(Debug, Clone)]
pub struct HostImporter {
    roots: Vec<PathBuf>,
}

impl HostImporter {
    pub fn new(roots: Vec<PathBuf>) -> Self {
        HostImporter { roots }
    }

    /// `raw` made absolute and free of `..` and symlinks, if it lies below an import root.
    fn confined(&self, raw: &str, what: &str) -> Result<PathBuf> {
        if self.roots.is_empty() {
            return Err(Error::precondition(format!(
                "{what} {raw:?} is on the server's host, and this server has no import_roots configured"
            )));
        }
        let path = Path::new(raw)
            .canonicalize()
            .map_err(|e| Error::invalid(format!("{what} {raw:?} cannot be read: {e}")))?;
        let inside = self.roots.iter().any(|r| {
            r.canonicalize()
                .map(|root| path.starts_with(root))
                .unwrap_or(false)
        });
        if !inside {
            return Err(Error::denied(format!(
                "{what} {raw:?} is outside the server's import_roots"
            )));
        }
        Ok(path)
    }
}

/// A git URL that names something on this host rather than a remote.
fn is_local_git(url: &str) -> bool {
    url.starts_with("file://") || url.starts_with('/') || url.starts_with('.')
}

fn git_clone(args: &[&str], dest: &Path) -> Result<()> {
    let out = Command::new("git")
        .args([
            "-c",
            "advice.detachedHead=false",
            "clone",
            "--quiet",
            "--depth",
            "1",
        ])
        .args(args)
        .arg(dest)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| Error::unavailable(format!("cannot run git: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::invalid(format!(
            "git clone failed: {}",
            stderr.trim().lines().last().unwrap_or("no message")
        )));
    }
    Ok(())
}

/// Walks `root` in sorted order, parents before children, sending what it finds; `.git` is
/// skipped when `skip_git`. Stops when the receiver goes away.
fn walk(root: &Path, skip_git: bool, tx: &tokio::sync::mpsc::Sender<Result<ImportItem>>) {
    use std::os::unix::fs::PermissionsExt;
    let send = |item: Result<ImportItem>| tx.blocking_send(item).is_ok();
    let entries = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| !(skip_git && e.depth() == 1 && e.file_name() == ".git"));
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                send(Err(Error::invalid(format!(
                    "cannot read {}: {e}",
                    root.display()
                ))));
                return;
            }
        };
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let Some(rel) = rel.to_str() else {
            send(Err(Error::invalid(format!(
                "{} is not a UTF-8 name; it cannot be imported",
                entry.path().display()
            ))));
            return;
        };
        let path = format!("/{rel}");
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) => {
                send(Err(Error::invalid(format!("cannot stat {path}: {e}"))));
                return;
            }
        };
        let mode = meta.permissions().mode() & 0o7777;
        let ft = entry.file_type();
        let item = if ft.is_dir() {
            Ok(ImportItem::Dir { path, mode })
        } else if ft.is_file() {
            std::fs::read(entry.path())
                .map(|data| ImportItem::File {
                    path: path.clone(),
                    mode,
                    data: data.into(),
                })
                .map_err(|e| Error::invalid(format!("cannot read {path}: {e}")))
        } else if ft.is_symlink() {
            std::fs::read_link(entry.path())
                .map_err(|e| Error::invalid(format!("cannot read link {path}: {e}")))
                .and_then(|t| {
                    t.to_str()
                        .map(|t| ImportItem::Symlink {
                            path: path.clone(),
                            target: t.to_owned(),
                        })
                        .ok_or_else(|| {
                            Error::invalid(format!("link {path} has a non-UTF-8 target"))
                        })
                })
        } else {
            tracing::info!(%path, "import skips a socket, FIFO or device node");
            continue;
        };
        let failed = item.is_err();
        if !send(item) || failed {
            return;
        }
    }
}

/// Runs `produce` on a blocking thread and streams what it sends.
fn stream_from(
    produce: impl FnOnce(&tokio::sync::mpsc::Sender<Result<ImportItem>>) + Send + 'static,
) -> ImportStream {
    let (tx, rx) = tokio::sync::mpsc::channel(DEPTH);
    tokio::task::spawn_blocking(move || produce(&tx));
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

impl Importer for HostImporter {
    fn open(
        &self,
        origin: ImportOrigin,
    ) -> Pin<Box<dyn Future<Output = Result<ImportStream>> + Send + '_>> {
        Box::pin(async move {
            match origin {
                ImportOrigin::LocalPath(raw) => {
                    let root = self.confined(&raw, "path")?;
                    if !root.is_dir() {
                        return Err(Error::invalid(format!("path {raw:?} is not a directory")));
                    }
                    Ok(stream_from(move |tx| walk(&root, false, tx)))
                }
                ImportOrigin::Git { url, reference } => {
                    let source = if is_local_git(&url) {
                        let local = url.strip_prefix("file://").unwrap_or(&url);
                        self.confined(local, "repository")?.display().to_string()
                    } else {
                        url.clone()
                    };
                    clone_and_walk(source, reference)
                }
                ImportOrigin::GitBundle(raw) => {
                    let bundle = self.confined(&raw, "bundle")?;
                    clone_and_walk(bundle.display().to_string(), None)
                }
            }
        })
    }
}

/// Clones (shallow) into a temporary directory on a blocking thread, then walks the work tree.
fn clone_and_walk(source: String, reference: Option<String>) -> Result<ImportStream> {
    if let Some(r) = &reference
        && (r.starts_with('-') || r.is_empty())
    {
        return Err(Error::invalid(format!(
            "ref {r:?} is not a branch or tag name"
        )));
    }
    Ok(stream_from(move |tx| {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => {
                let _ = tx.blocking_send(Err(Error::unavailable(format!(
                    "cannot make a directory to clone into: {e}"
                ))));
                return;
            }
        };
        let dest = dir.path().join("tree");
        let mut args: Vec<&str> = Vec::new();
        if let Some(r) = &reference {
            args.extend(["--branch", r.as_str()]);
        }
        args.extend(["--", source.as_str()]);
        match git_clone(&args, &dest) {
            Ok(()) => walk(&dest, true, tx),
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
            }
        }
    }))
}
