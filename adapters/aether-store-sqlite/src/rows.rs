//! Conversions between SQLite rows and domain records.

use std::collections::BTreeMap;

use rusqlite::Row;

use aether_domain::{
    Action, Entry, EntryKind, Error, Result, SessionId, SessionPath, SessionStatus, TenantId,
    Timestamp,
};
use aether_ports::store::SessionRecord;

pub(crate) const ENTRY_COLUMNS: &str = "path, present, kind, mode, uid, gid, size, hash, target, rdev, nlink, atime, mtime, ctime, version, xattrs, inode";

fn corrupt(what: &str) -> Error {
    Error::internal(format!("metadata store holds a corrupt {what}"))
}

pub(crate) fn kind_code(kind: EntryKind) -> i64 {
    EntryKind::ALL.iter().position(|k| *k == kind).unwrap_or(0) as i64
}

/// Reads an entry row selected with [`ENTRY_COLUMNS`]; `None` for a whiteout.
pub(crate) fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<(String, Option<Entry>)> {
    let path: String = row.get(0)?;
    let present: bool = row.get(1)?;
    if !present {
        return Ok((path, None));
    }
    let kind_idx: i64 = row.get(2)?;
    let xattrs: Option<Vec<u8>> = row.get(15)?;
    let entry = (|| -> Result<Entry> {
        Ok(Entry {
            path: SessionPath::parse(&path).map_err(|_| corrupt("path"))?,
            kind: *EntryKind::ALL
                .get(kind_idx as usize)
                .ok_or_else(|| corrupt("entry kind"))?,
            mode: row.get::<_, i64>(3).map_err(|_| corrupt("mode"))? as u32,
            uid: row.get::<_, i64>(4).map_err(|_| corrupt("uid"))? as u32,
            gid: row.get::<_, i64>(5).map_err(|_| corrupt("gid"))? as u32,
            size: row.get::<_, i64>(6).map_err(|_| corrupt("size"))? as u64,
            content_hash: row.get(7).map_err(|_| corrupt("hash"))?,
            target: row.get(8).map_err(|_| corrupt("target"))?,
            rdev: row.get::<_, i64>(9).map_err(|_| corrupt("rdev"))? as u64,
            nlink: row.get::<_, i64>(10).map_err(|_| corrupt("nlink"))? as u32,
            atime: Timestamp(row.get(11).map_err(|_| corrupt("atime"))?),
            mtime: Timestamp(row.get(12).map_err(|_| corrupt("mtime"))?),
            ctime: Timestamp(row.get(13).map_err(|_| corrupt("ctime"))?),
            version: row.get::<_, i64>(14).map_err(|_| corrupt("version"))? as u64,
            xattrs: decode_xattrs(xattrs.as_deref()).ok_or_else(|| corrupt("xattr set"))?,
            inode: row.get::<_, i64>(16).map_err(|_| corrupt("inode"))? as u64,
        })
    })()
    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    Ok((path, Some(entry)))
}

/// Length-prefixed `name, value` pairs; `None` when there are none.
pub(crate) fn encode_xattrs(x: &BTreeMap<String, Vec<u8>>) -> Option<Vec<u8>> {
    if x.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for (k, v) in x {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    Some(out)
}

fn decode_xattrs(raw: Option<&[u8]>) -> Option<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let Some(mut raw) = raw else { return Some(out) };
    let take = |raw: &mut &[u8]| -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(raw.get(..4)?.try_into().ok()?) as usize;
        let v = raw.get(4..4 + len)?.to_vec();
        *raw = &raw[4 + len..];
        Some(v)
    };
    while !raw.is_empty() {
        let k = String::from_utf8(take(&mut raw)?).ok()?;
        let v = take(&mut raw)?;
        out.insert(k, v);
    }
    Some(out)
}

pub(crate) const SESSION_COLUMNS: &str = "id, tenant, base_fingerprint, source_ref, status, tags, generation, created_at, last_activity_at, approval_policy, chain";

pub(crate) fn session_from_row(row: &Row<'_>) -> rusqlite::Result<(SessionRecord, Vec<i64>)> {
    let wrap = |e: Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    let id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let source_ref: Option<String> = row.get(3)?;
    let status: String = row.get(4)?;
    let tags: String = row.get(5)?;
    let policy: String = row.get(9)?;
    let chain: String = row.get(10)?;
    let rec = SessionRecord {
        id: SessionId::parse(&id).map_err(wrap)?,
        tenant: TenantId::parse(&tenant).map_err(wrap)?,
        base_fingerprint: row.get(2)?,
        source_ref: source_ref
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|_| wrap(corrupt("source ref")))?,
        status: SessionStatus::parse(&status).map_err(wrap)?,
        tags: serde_json::from_str(&tags).map_err(|_| wrap(corrupt("tag set")))?,
        generation: row.get::<_, i64>(6)? as u64,
        created_at: Timestamp(row.get(7)?),
        last_activity_at: Timestamp(row.get(8)?),
        approval_policy: policy
            .split(',')
            .filter(|s| !s.is_empty())
            .map(Action::parse)
            .collect::<Result<_>>()
            .map_err(wrap)?,
    };
    Ok((rec, parse_chain(&chain).map_err(wrap)?))
}

pub(crate) fn format_chain(chain: &[i64]) -> String {
    chain
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn parse_chain(raw: &str) -> Result<Vec<i64>> {
    raw.split(',')
        .map(|s| s.parse::<i64>().map_err(|_| corrupt("layer chain")))
        .collect()
}

pub(crate) fn policy_text(p: &[Action]) -> String {
    p.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(",")
}
