//! Reads an uploaded tar archive (already in memory) into import items: regular files,
//! directories, symlinks, and hard links resolved to the file they name. Anything else (device
//! nodes, FIFOs) and any path escaping the root is refused with the entry's name.

use std::collections::HashMap;
use std::io::Read;

use aether_domain::{Error, Result};
use aether_ports::sources::ImportItem;

/// A relative archive path as a session path: `./a/b` and `a/b/` become `/a/b`.
fn normalize(raw: &str) -> Result<Option<String>> {
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(Error::invalid(format!(
                    "archive entry {raw:?} climbs out of the root with .."
                )));
            }
            c => parts.push(c),
        }
    }
    Ok((!parts.is_empty()).then(|| format!("/{}", parts.join("/"))))
}

fn bad(what: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!(
        "the archive is not a readable tar file ({what}: {e})"
    ))
}

pub(crate) fn read_tar(data: &[u8]) -> Result<Vec<ImportItem>> {
    let mut archive = tar::Archive::new(data);
    let mut items = Vec::new();
    // Files by path, for hard links that name an earlier entry.
    let mut files: HashMap<String, (u32, bytes::Bytes)> = HashMap::new();
    for entry in archive.entries().map_err(|e| bad("entries", e))? {
        let mut entry = entry.map_err(|e| bad("an entry", e))?;
        let raw = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| Error::invalid("an archive entry's name is not UTF-8"))?;
        let Some(path) = normalize(&raw)? else {
            continue; // the root itself
        };
        let kind = entry.header().entry_type();
        // Archives written by some tools leave the mode of links blank; a missing mode reads
        // as the usual default of the kind.
        let default = if kind.is_dir() { 0o755 } else { 0o644 };
        let mode = entry.header().mode().unwrap_or(default) & 0o7777;
        if kind.is_dir() {
            items.push(ImportItem::Dir { path, mode });
        } else if kind.is_file() {
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut data).map_err(|e| bad(&raw, e))?;
            let data = bytes::Bytes::from(data);
            files.insert(path.clone(), (mode, data.clone()));
            items.push(ImportItem::File { path, mode, data });
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .ok_or_else(|| Error::invalid(format!("symlink {raw:?} has no target")))?;
            items.push(ImportItem::Symlink { path, target });
        } else if kind.is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            let (mode, data) = normalize(&target)?
                .and_then(|t| files.get(&t).cloned())
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "hard link {raw:?} names {target:?}, which is not an earlier file of the archive"
                    ))
                })?;
            items.push(ImportItem::File { path, mode, data });
        } else if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            continue;
        } else {
            return Err(Error::invalid(format!(
                "archive entry {raw:?} is a {kind:?}; only files, directories and links can be imported"
            )));
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().expect("finish the archive")
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, path, data).expect("append");
    }

    #[test]
    fn files_dirs_links() {
        let data = tar_of(|b| {
            let mut d = tar::Header::new_gnu();
            d.set_entry_type(tar::EntryType::Directory);
            d.set_mode(0o700);
            d.set_size(0);
            d.set_cksum();
            b.append_data(&mut d, "./src/", &[][..]).expect("dir");
            file(b, "./src/main.rs", b"fn main() {}");
            let mut l = tar::Header::new_gnu();
            l.set_entry_type(tar::EntryType::Symlink);
            l.set_size(0);
            l.set_cksum();
            b.append_link(&mut l, "latest", "src/main.rs")
                .expect("symlink");
            let mut hl = tar::Header::new_gnu();
            hl.set_entry_type(tar::EntryType::Link);
            hl.set_size(0);
            hl.set_cksum();
            b.append_link(&mut hl, "copy.rs", "./src/main.rs")
                .expect("hard link");
        });
        let items = read_tar(&data).expect("read");
        let shown: Vec<String> = items
            .iter()
            .map(|i| match i {
                ImportItem::Dir { path, mode } => format!("dir {path} {mode:o}"),
                ImportItem::File { path, mode, data } => {
                    format!("file {path} {mode:o} {}", String::from_utf8_lossy(data))
                }
                ImportItem::Symlink { path, target } => format!("link {path} -> {target}"),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "dir /src 700",
                "file /src/main.rs 755 fn main() {}",
                "link /latest -> src/main.rs",
                "file /copy.rs 755 fn main() {}",
            ]
        );
    }

    #[test]
    fn refuses_escapes_and_garbage() {
        let mut escape = tar_of(|b| file(b, "ok.txt", b"x"));
        // Rewrite the name in the first header to climb out (the builder refuses to).
        escape[..9].copy_from_slice(b"../x.txt\0");
        let mut h = tar::Header::from_byte_slice(&escape[..512]).clone();
        h.set_cksum();
        escape[..512].copy_from_slice(h.as_bytes());
        let e = read_tar(&escape).unwrap_err();
        assert!(e.message.contains(".."), "{e}");
        let e = read_tar(b"this is not a tar file at all, just some words").unwrap_err();
        assert_eq!(e.code, aether_domain::Code::InvalidArgument, "{e}");
    }
}
