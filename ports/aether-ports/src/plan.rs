//! Validation of API requests into domain operations, shared by every implementation so that
//! bad input is rejected with the same message everywhere.

use base64::Engine as _;

use aether_domain::tree::{AttrChange, Op, XattrMode};
use aether_domain::{Error, SessionPath};

use crate::Result;
use crate::model::*;

pub fn path(raw: &str) -> Result<SessionPath> {
    SessionPath::parse(raw)
}

/// A mutation whose content (if any) still has to be stored before it can become an [`Op`].
#[derive(Debug)]
pub enum Planned {
    Op(Op),
    Write {
        path: SessionPath,
        data: crate::FileBody,
        mode: Option<u32>,
        parents: bool,
        expected_hash: Option<String>,
    },
    Patch(PatchPlan),
}

/// Byte ranges to write into a file's current content (resolved when the commit is planned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchPlan {
    pub path: SessionPath,
    pub segments: Vec<aether_domain::tree::Segment>,
    pub truncate_to: Option<u64>,
    pub expected_hash: Option<String>,
    pub create: bool,
}

fn mode(m: Option<u32>) -> Result<Option<u32>> {
    match m {
        Some(m) if m > 0o7777 => Err(Error::invalid(format!(
            "mode {m:#o} has bits beyond the 12 permission bits (max 0o7777)"
        ))),
        m => Ok(m),
    }
}

fn expected(h: Option<String>) -> Result<Option<String>> {
    match h {
        Some(h) => {
            let h = h.trim_matches('"').to_owned();
            if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(Some(h.to_ascii_lowercase()))
            } else {
                Err(Error::invalid(format!(
                    "expectedHash {h:?} is not a SHA-256 hex digest"
                )))
            }
        }
        None => Ok(None),
    }
}

impl TryFrom<MkdirRequest> for Op {
    type Error = Error;
    fn try_from(r: MkdirRequest) -> Result<Op> {
        Ok(Op::Mkdir {
            path: path(&r.path)?,
            mode: mode(r.mode)?,
            parents: r.parents,
        })
    }
}

impl TryFrom<RmdirRequest> for Op {
    type Error = Error;
    fn try_from(r: RmdirRequest) -> Result<Op> {
        Ok(Op::Rmdir {
            path: path(&r.path)?,
            recursive: r.recursive,
        })
    }
}

impl TryFrom<DeleteFileRequest> for Op {
    type Error = Error;
    fn try_from(r: DeleteFileRequest) -> Result<Op> {
        Ok(Op::Unlink {
            path: path(&r.path)?,
            expected_hash: expected(r.expected_hash)?,
        })
    }
}

impl TryFrom<RenameRequest> for Op {
    type Error = Error;
    fn try_from(r: RenameRequest) -> Result<Op> {
        Ok(Op::Rename {
            from: path(&r.from)?,
            to: path(&r.to)?,
            no_replace: r.no_replace,
            exchange: r.exchange,
        })
    }
}

impl TryFrom<LinkRequest> for Op {
    type Error = Error;
    fn try_from(r: LinkRequest) -> Result<Op> {
        Ok(Op::Link {
            existing: path(&r.existing_path)?,
            new: path(&r.new_path)?,
        })
    }
}

impl TryFrom<SymlinkRequest> for Op {
    type Error = Error;
    fn try_from(r: SymlinkRequest) -> Result<Op> {
        aether_domain::tree::validate_symlink_target(&r.target)?;
        Ok(Op::Symlink {
            path: path(&r.path)?,
            target: r.target,
        })
    }
}

impl TryFrom<SetXattrRequest> for Op {
    type Error = Error;
    fn try_from(r: SetXattrRequest) -> Result<Op> {
        aether_domain::tree::validate_xattr_name(&r.name)?;
        let mode = match r.mode {
            XattrSetMode::Either => XattrMode::Either,
            XattrSetMode::Create => XattrMode::Create,
            XattrSetMode::Replace => XattrMode::Replace,
        };
        Ok(Op::SetXattr {
            path: path(&r.path)?,
            name: r.name,
            value: r.value,
            mode,
        })
    }
}

impl TryFrom<XattrRequest> for Op {
    type Error = Error;
    fn try_from(r: XattrRequest) -> Result<Op> {
        aether_domain::tree::validate_xattr_name(&r.name)?;
        Ok(Op::RemoveXattr {
            path: path(&r.path)?,
            name: r.name,
        })
    }
}

impl TryFrom<SetAttributesRequest> for Op {
    type Error = Error;
    fn try_from(r: SetAttributesRequest) -> Result<Op> {
        let change = AttrChange {
            mode: mode(r.mode)?,
            uid: r.uid,
            gid: r.gid,
            atime: r.atime,
            mtime: r.mtime,
        };
        Ok(Op::SetAttributes {
            path: path(&r.path)?,
            change,
        })
    }
}

impl TryFrom<MknodRequest> for Op {
    type Error = Error;
    fn try_from(r: MknodRequest) -> Result<Op> {
        Ok(Op::Mknod {
            path: path(&r.path)?,
            kind: r.kind,
            mode: mode(Some(r.mode))?.unwrap_or(0),
            rdev: r.rdev,
        })
    }
}

impl TryFrom<WriteFileRequest> for Planned {
    type Error = Error;
    fn try_from(r: WriteFileRequest) -> Result<Planned> {
        Ok(Planned::Write {
            path: path(&r.path)?,
            data: r.data,
            mode: mode(r.mode)?,
            parents: r.parents,
            expected_hash: expected(r.expected_hash)?,
        })
    }
}

impl TryFrom<PatchSegmentsRequest> for Planned {
    type Error = Error;
    fn try_from(r: PatchSegmentsRequest) -> Result<Planned> {
        Ok(Planned::Patch(PatchPlan {
            path: path(&r.path)?,
            segments: r
                .segments
                .into_iter()
                .map(|s| aether_domain::tree::Segment {
                    offset: s.offset,
                    data: s.data,
                })
                .collect(),
            truncate_to: r.truncate_to,
            expected_hash: expected(r.expected_hash)?,
            create: r.create,
        }))
    }
}

impl TryFrom<BatchOperation> for Planned {
    type Error = Error;
    fn try_from(op: BatchOperation) -> Result<Planned> {
        Ok(Planned::Op(match op {
            BatchOperation::Mkdir(r) => r.try_into()?,
            BatchOperation::Rmdir(r) => r.try_into()?,
            BatchOperation::DeleteFile(r) => r.try_into()?,
            BatchOperation::Rename(r) => r.try_into()?,
            BatchOperation::Link(r) => r.try_into()?,
            BatchOperation::Unlink(r) => Op::Unlink {
                path: path(&r.path)?,
                expected_hash: None,
            },
            BatchOperation::Symlink(r) => r.try_into()?,
            BatchOperation::SetXattr(r) => r.try_into()?,
            BatchOperation::RemoveXattr(r) => r.try_into()?,
            BatchOperation::SetAttributes(r) => r.try_into()?,
            BatchOperation::Mknod(r) => r.try_into()?,
            BatchOperation::WriteFile {
                path: p,
                data,
                mode: m,
                parents,
                expected_hash,
            } => {
                return Ok(Planned::Write {
                    path: path(&p)?,
                    data: data.into(),
                    mode: mode(m)?,
                    parents,
                    expected_hash: expected(expected_hash)?,
                });
            }
        }))
    }
}

/// Validates a batch: non-empty and at most `MAX_BATCH_OPERATIONS` items; errors name the item.
pub const MAX_BATCH_OPERATIONS: usize = 1000;

pub fn plan_batch(req: BatchRequest) -> Result<Vec<Planned>> {
    if req.operations.is_empty() {
        return Err(Error::invalid("batch has no operations"));
    }
    if req.operations.len() > MAX_BATCH_OPERATIONS {
        return Err(Error::invalid(format!(
            "batch has {} operations; the limit is {MAX_BATCH_OPERATIONS}",
            req.operations.len()
        )));
    }
    req.operations
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            Planned::try_from(op).map_err(|mut e| {
                e.message = format!("operations[{i}]: {}", e.message);
                e
            })
        })
        .collect()
}

/// Opaque page tokens: base64url of `<kind>:<last key>`, so a token of one list is refused by another.
pub fn encode_token(kind: &str, last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{last}"))
}

pub fn decode_token(kind: &str, token: &str) -> Result<String> {
    let bad = || Error::invalid(format!("pageToken {token:?} is not a token of this list"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    raw.strip_prefix(kind)
        .and_then(|r| r.strip_prefix(':'))
        .map(str::to_owned)
        .ok_or_else(bad)
}

/// Validates session tags: at most 64, keys 1–63 of `[a-z0-9_.-]`, values up to 256 bytes.
pub fn validate_tags(tags: &std::collections::BTreeMap<String, String>) -> Result<()> {
    if tags.len() > 64 {
        return Err(Error::invalid(format!(
            "{} tags given; the limit is 64",
            tags.len()
        )));
    }
    for (k, v) in tags {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
        if !key_ok {
            return Err(Error::invalid(format!(
                "tag key {k:?} must be 1-63 characters of a-z, 0-9, _ . -"
            )));
        }
        if v.len() > 256 || v.contains('\0') {
            return Err(Error::invalid(format!(
                "tag {k:?} has a value longer than 256 bytes or with NUL"
            )));
        }
    }
    Ok(())
}

/// Parses the `tag=key:value` list filter.
pub fn parse_tag_filter(raw: &str) -> Result<(String, String)> {
    raw.split_once(':')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| Error::invalid(format!("tag filter {raw:?} must be key:value")))
}
