//! `MetadataStore` on SQLite: sessions as chains of copy-on-write layers, events, checkpoints
//! and idempotency records, each mutation one IMMEDIATE transaction.

use std::path::Path;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use aether_domain::overlay::{LayerPage, merge_pages};
use aether_domain::tree::Change;
use aether_domain::{
    CheckpointId, Entry, Error, Result, SessionId, SessionPath, SessionStatus, TenantId, Timestamp,
};
use aether_ports::store::*;
use aether_ports::{Checkpoint, Event};

use crate::backend;
use crate::cache::{Mention, ReadCache};
use crate::db::Db;
use crate::rows::*;

/// The embedded metadata store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteMetadataStore {
    pub(crate) db: Arc<Db>,
    pub(crate) cache: Arc<ReadCache>,
}

impl SqliteMetadataStore {
    /// Opens (creating if needed) the database at `path` with `readers` reader threads.
    pub fn open(path: &Path, readers: usize) -> Result<Self> {
        let db = Db::open(path, readers, crate::schema::init)?;
        Ok(SqliteMetadataStore {
            db: Arc::new(db),
            cache: Arc::new(ReadCache::default()),
        })
    }
}

/// Maps a rusqlite error, unwrapping domain errors that row decoders smuggled through it.
pub(crate) fn sql_err(context: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| match e {
        rusqlite::Error::ToSqlConversionFailure(inner) => match inner.downcast::<Error>() {
            Ok(e) => *e,
            Err(other) => backend(context, other),
        },
        e => backend(context, e),
    }
}

/// `execute` through the statement cache (the plain form re-parses the SQL every time).
pub(crate) fn exec(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(p)
}

pub(crate) fn query_row<T>(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.prepare_cached(sql)?.query_row(p, f)
}

pub(crate) fn session_not_found(id: &SessionId) -> Error {
    Error::not_found(format!("session {id} not found"))
}

pub(crate) fn load_session(
    conn: &Connection,
    tenant: &TenantId,
    id: &SessionId,
) -> Result<Option<(SessionRecord, Vec<i64>)>> {
    conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1 AND tenant = ?2"
    ))
    .and_then(|mut s| {
        s.query_row(params![id.as_str(), tenant.as_str()], session_from_row)
            .optional()
    })
    .map_err(sql_err("read a session"))
}

fn chain_of(conn: &Connection, tree: &TreeRef) -> Result<Vec<i64>> {
    match tree {
        TreeRef::Session { tenant, session } => query_row(
            conn,
            "SELECT chain FROM sessions WHERE id = ?1 AND tenant = ?2",
            params![session.as_str(), tenant.as_str()],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(sql_err("read a session's layers"))?
        .ok_or_else(|| session_not_found(session))
        .and_then(|c| parse_chain(&c)),
        TreeRef::Checkpoint {
            tenant,
            session,
            checkpoint,
        } => query_row(
            conn,
            "SELECT chain FROM checkpoints WHERE id = ?1 AND session = ?2 AND tenant = ?3",
            params![checkpoint.as_str(), session.as_str(), tenant.as_str()],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(sql_err("read a checkpoint's layers"))?
        .ok_or_else(|| Error::not_found(format!("checkpoint {checkpoint} not found")))
        .and_then(|c| parse_chain(&c)),
    }
}

/// An entry (if any) and what each visited layer said about its path.
type Lookup = (Option<Entry>, Vec<(i64, Mention)>);

/// Resolves `path` through `chain`, also returning what each visited layer said (for the cache).
fn lookup(conn: &Connection, chain: &[i64], path: &SessionPath) -> Result<Lookup> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries WHERE layer = ?1 AND path = ?2"
        ))
        .map_err(sql_err("prepare a lookup"))?;
    let mut seen = Vec::new();
    for layer in chain {
        let found = stmt
            .query_row(params![layer, path.as_str()], entry_from_row)
            .optional()
            .map_err(sql_err("look up an entry"))?;
        match found {
            None => seen.push((*layer, Mention::Nothing)),
            Some((_, None)) => {
                seen.push((*layer, Mention::Whiteout));
                return Ok((None, seen));
            }
            Some((_, Some(e))) => {
                seen.push((*layer, Mention::Entry(e.clone())));
                return Ok((Some(e), seen));
            }
        }
    }
    Ok((None, seen))
}

/// The exclusive upper bound of the paths below `prefix` (which ends in `/`): `/` + 1 is `0`.
fn upper_bound(prefix: &str) -> String {
    format!("{}0", &prefix[..prefix.len() - 1])
}

fn list(conn: &Connection, chain: &[i64], q: &ListQuery) -> Result<(Vec<Entry>, bool)> {
    let recursive_sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM entries WHERE layer = ?1 AND path >= ?2 AND path < ?3 AND path > ?4 ORDER BY path LIMIT ?5"
    );
    let children_sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM entries WHERE layer = ?1 AND parent = ?2 AND path > ?4 AND ?3 = ?3 ORDER BY path LIMIT ?5"
    );
    let mut stmt = conn
        .prepare_cached(if q.recursive {
            &recursive_sql
        } else {
            &children_sql
        })
        .map_err(sql_err("prepare a listing"))?;
    let prefix = q.dir.descendant_prefix();
    let (lo, hi) = if q.recursive {
        (prefix.clone(), upper_bound(&prefix))
    } else {
        (q.dir.as_str().to_owned(), String::new())
    };
    let mut after = q
        .after
        .as_ref()
        .map_or_else(|| q.dir.as_str().to_owned(), |p| p.as_str().to_owned());
    let mut out: Vec<Entry> = Vec::new();
    loop {
        let want = q.limit + 1 - out.len();
        let mut pages = Vec::with_capacity(chain.len());
        for layer in chain {
            let rows = stmt
                .query_map(params![layer, lo, hi, after, want as i64], entry_from_row)
                .map_err(sql_err("list entries"))?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(sql_err("list entries"))?;
            let truncated = rows.len() >= want;
            pages.push(LayerPage { rows, truncated });
        }
        let (visible, bound) = merge_pages(pages);
        out.extend(visible.into_iter().map(|(_, e)| e));
        if out.len() > q.limit {
            out.truncate(q.limit);
            return Ok((out, true));
        }
        match bound {
            Some(b) => after = b,
            None => return Ok((out, false)),
        }
    }
}

fn blob_ref(tx: &Connection, hash: &str, delta: i64) -> Result<()> {
    tx.prepare_cached("INSERT INTO blobs (hash, refs) VALUES (?1, ?2) ON CONFLICT(hash) DO UPDATE SET refs = refs + excluded.refs")
        .and_then(|mut s| s.execute(params![hash, delta]))
        .map(|_| ())
        .map_err(sql_err("count a blob reference"))
}

pub(crate) fn put_entry(tx: &Connection, layer: i64, e: &Entry) -> Result<()> {
    tx.prepare_cached(
        // An upsert updates a row in place (REPLACE would delete and re-insert it, touching
        // every index even when no indexed column changed).
        "INSERT INTO entries (layer, path, parent, present, kind, mode, uid, gid, size, hash, target, rdev, nlink, atime, mtime, ctime, version, xattrs, inode) \
         VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) \
         ON CONFLICT(layer, path) DO UPDATE SET present = 1, kind = excluded.kind, mode = excluded.mode, uid = excluded.uid, \
         gid = excluded.gid, size = excluded.size, hash = excluded.hash, target = excluded.target, rdev = excluded.rdev, \
         nlink = excluded.nlink, atime = excluded.atime, mtime = excluded.mtime, ctime = excluded.ctime, \
         version = excluded.version, xattrs = excluded.xattrs, inode = excluded.inode",
    )
    .and_then(|mut s| {
        s.execute(params![
            layer,
            e.path.as_str(),
            e.path.parent().as_str(),
            kind_code(e.kind),
            e.mode,
            e.uid,
            e.gid,
            e.size as i64,
            e.content_hash,
            e.target,
            e.rdev as i64,
            e.nlink,
            e.atime.nanos(),
            e.mtime.nanos(),
            e.ctime.nanos(),
            e.version as i64,
            encode_xattrs(&e.xattrs),
            e.inode as i64,
        ])
    })
    .map(|_| ())
    .map_err(sql_err("write an entry"))
}

fn apply_change(tx: &Connection, chain: &[i64], change: &Change) -> Result<()> {
    let top = chain[0];
    let old_hash: Option<Option<String>> = tx
        .prepare_cached("SELECT hash FROM entries WHERE layer = ?1 AND path = ?2")
        .and_then(|mut s| {
            s.query_row(params![top, change.path.as_str()], |r| r.get(0))
                .optional()
        })
        .map_err(sql_err("read an entry"))?;
    match &change.entry {
        Some(e) => {
            put_entry(tx, top, e)?;
            if let Some(h) = &e.content_hash {
                blob_ref(tx, h, 1)?;
            }
        }
        None if chain.len() > 1 => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO entries (layer, path, parent, present, kind, mode, uid, gid, size, rdev, nlink, atime, mtime, ctime, version) \
                 VALUES (?1, ?2, ?3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
            )
            .and_then(|mut s| s.execute(params![top, change.path.as_str(), change.path.parent().as_str()]))
            .map_err(sql_err("write a whiteout"))?;
        }
        None => {
            tx.prepare_cached("DELETE FROM entries WHERE layer = ?1 AND path = ?2")
                .and_then(|mut s| s.execute(params![top, change.path.as_str()]))
                .map_err(sql_err("delete an entry"))?;
        }
    }
    if let Some(Some(h)) = old_hash {
        blob_ref(tx, &h, -1)?;
    }
    Ok(())
}

pub(crate) fn append_events(
    tx: &Connection,
    session: &SessionId,
    events: &[NewEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    // Reserve the sequence numbers and learn the first in one statement.
    let n = events.len() as i64;
    let first: i64 = query_row(
        tx,
        "UPDATE sessions SET next_event = next_event + ?1 WHERE id = ?2 RETURNING next_event - ?1",
        params![n, session.as_str()],
        |r| r.get(0),
    )
    .map_err(sql_err("reserve event numbers"))?;
    insert_events(tx, session, first, events)
}

/// Inserts `events` numbered from `first` (already reserved in the session row).
fn insert_events(
    tx: &Connection,
    session: &SessionId,
    first: i64,
    events: &[NewEvent],
) -> Result<()> {
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO events (session, seq, kind, path, to_path, related_id, principal, generation, time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .map_err(sql_err("prepare an event insert"))?;
    for (i, e) in events.iter().enumerate() {
        stmt.execute(params![
            session.as_str(),
            first + i as i64,
            e.kind,
            e.path,
            e.to_path,
            e.related_id,
            e.principal,
            e.generation as i64,
            e.time.nanos()
        ])
        .map_err(sql_err("append an event"))?;
    }
    Ok(())
}

/// Whether `idem`'s key is recorded already: checked inside the commit's transaction, so two
/// copies of one request can never both apply.
fn recorded(
    tx: &Connection,
    tenant: &TenantId,
    scope: &str,
    idem: &Option<IdempotencyRecord>,
) -> Result<bool> {
    match idem {
        Some(idem) => recorded_key(tx, tenant, scope, &idem.key),
        None => Ok(false),
    }
}

fn recorded_key(tx: &Connection, tenant: &TenantId, scope: &str, key: &str) -> Result<bool> {
    query_row(
        tx,
        "SELECT 1 FROM idempotency WHERE tenant = ?1 AND scope = ?2 AND key = ?3",
        params![tenant.as_str(), scope, key],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
    .map_err(sql_err("look up an idempotency key"))
}

pub(crate) fn remember(
    tx: &Connection,
    tenant: &TenantId,
    scope: &str,
    idem: &Option<IdempotencyRecord>,
) -> Result<()> {
    match idem {
        Some(idem) => remember_one(tx, tenant, scope, idem),
        None => Ok(()),
    }
}

fn remember_one(
    tx: &Connection,
    tenant: &TenantId,
    scope: &str,
    idem: &IdempotencyRecord,
) -> Result<()> {
    let outcome = serde_json::to_string(&idem.outcome)
        .map_err(|e| backend("encode an idempotent outcome", e))?;
    exec(tx,
        "INSERT OR REPLACE INTO idempotency (tenant, scope, key, outcome, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![tenant.as_str(), scope, idem.key, outcome, idem.time.nanos()],
    )
    .map_err(sql_err("record an idempotency key"))?;
    // Replies are kept for a week (the SPEC asks for at least a day); expired ones are swept
    // now and then rather than on every write.
    static RECORDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if RECORDED
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .is_multiple_of(IDEMPOTENCY_SWEEP_EVERY)
    {
        let cutoff = idem
            .time
            .nanos()
            .saturating_sub(IDEMPOTENCY_RETENTION_NANOS);
        exec(
            tx,
            "DELETE FROM idempotency WHERE created_at < ?1",
            params![cutoff],
        )
        .map_err(sql_err("expire idempotency keys"))?;
    }
    Ok(())
}

/// How long a recorded reply is replayed: 7 days.
const IDEMPOTENCY_RETENTION_NANOS: i64 = 7 * 24 * 3600 * 1_000_000_000;
const IDEMPOTENCY_SWEEP_EVERY: u64 = 1024;

pub(crate) fn new_layer(tx: &Connection, parent: Option<i64>) -> Result<i64> {
    exec(
        tx,
        "INSERT INTO layers (parent, refs) VALUES (?1, 1)",
        params![parent],
    )
    .map_err(sql_err("create a layer"))?;
    let id = tx.last_insert_rowid();
    if let Some(p) = parent {
        exec(
            tx,
            "UPDATE layers SET refs = refs + 1 WHERE id = ?1",
            params![p],
        )
        .map_err(sql_err("reference a layer"))?;
    }
    Ok(id)
}

/// Drops one reference to `layer`; a layer nobody references is deleted with its rows, and its
/// parent loses a reference in turn.
fn release_layer(tx: &Connection, mut layer: i64) -> Result<()> {
    loop {
        let (refs, parent): (i64, Option<i64>) = query_row(
            tx,
            "UPDATE layers SET refs = refs - 1 WHERE id = ?1 RETURNING refs, parent",
            params![layer],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql_err("release a layer"))?;
        if refs > 0 {
            return Ok(());
        }
        exec(tx,
            "UPDATE blobs SET refs = refs - (SELECT count(*) FROM entries e WHERE e.layer = ?1 AND e.present = 1 AND e.hash = blobs.hash) \
             WHERE hash IN (SELECT hash FROM entries WHERE layer = ?1 AND present = 1 AND hash IS NOT NULL)",
            params![layer],
        )
        .map_err(sql_err("release blob references"))?;
        exec(tx, "DELETE FROM entries WHERE layer = ?1", params![layer])
            .map_err(sql_err("delete a layer's entries"))?;
        exec(tx, "DELETE FROM layers WHERE id = ?1", params![layer])
            .map_err(sql_err("delete a layer"))?;
        match parent {
            Some(p) => layer = p,
            None => return Ok(()),
        }
    }
}

pub(crate) fn insert_session_row(
    tx: &Connection,
    rec: &SessionRecord,
    chain: &[i64],
) -> Result<()> {
    let source_ref = rec
        .source_ref
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| backend("encode a source ref", e))?;
    let tags = serde_json::to_string(&rec.tags).map_err(|e| backend("encode tags", e))?;
    exec(tx,
        &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
        params![
            rec.id.as_str(),
            rec.tenant.as_str(),
            rec.base_fingerprint,
            source_ref,
            rec.status.as_str(),
            tags,
            rec.generation as i64,
            rec.created_at.nanos(),
            rec.last_activity_at.nanos(),
            policy_text(&rec.approval_policy),
            format_chain(chain)
        ],
    )
    .map(|_| ())
    .map_err(sql_err("insert a session"))
}

fn set_chain(tx: &Connection, id: &SessionId, chain: &[i64]) -> Result<()> {
    exec(
        tx,
        "UPDATE sessions SET chain = ?1 WHERE id = ?2",
        params![format_chain(chain), id.as_str()],
    )
    .map(|_| ())
    .map_err(sql_err("update a session's layers"))
}

impl MetadataStore for SqliteMetadataStore {
    async fn insert_session(
        &self,
        rec: &SessionRecord,
        root: &Entry,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        let (rec, root) = (rec.clone(), root.clone());
        let cache = self.cache.clone();
        self.db
            .write(
                move |tx| {
                    let layer = new_layer(tx, None)?;
                    put_entry(tx, layer, &root)?;
                    insert_session_row(tx, &rec, &[layer])?;
                    append_events(tx, &rec.id, &[event])?;
                    remember(tx, &rec.tenant, "", &idem)?;
                    Ok((layer, rec, root))
                },
                move |(layer, rec, root)| {
                    cache.write(|c| {
                        c.rows
                            .insert((*layer, root.path.clone()), Mention::Entry(root.clone()));
                        c.sessions
                            .insert(rec.id.clone(), (rec.clone(), vec![*layer]));
                    })
                },
            )
            .await
            .map(|_| ())
    }

    async fn session(&self, tenant: &TenantId, id: &SessionId) -> Result<Option<SessionRecord>> {
        if let Some((rec, _)) = self.cache.session(id) {
            return Ok(Some(rec).filter(|r| &r.tenant == tenant));
        }
        let (tenant, id) = (tenant.clone(), id.clone());
        let epoch = self.cache.epoch();
        let cache = self.cache.clone();
        self.db
            .read(move |conn| {
                let found = load_session(conn, &tenant, &id)?;
                if let Some((rec, chain)) = &found {
                    cache.fill(epoch, |c| {
                        c.sessions.insert(id.clone(), (rec.clone(), chain.clone()));
                    });
                }
                Ok(found.map(|(r, _)| r))
            })
            .await
    }

    async fn list_sessions(
        &self,
        tenant: &TenantId,
        filter: &SessionFilter,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Vec<SessionRecord>> {
        let (tenant, filter) = (tenant.clone(), filter.clone());
        let after = after.map_or_else(String::new, |a| a.as_str().to_owned());
        self.db
            .read(move |conn| {
                let mut sql =
                    format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE tenant = ?1 AND id > ?2 AND substr(id, 1, {}) != '{HOLDER_PREFIX}'", HOLDER_PREFIX.len());
                let mut args: Vec<String> = vec![tenant.as_str().to_owned(), after];
                if let Some(s) = filter.status {
                    args.push(s.as_str().to_owned());
                    sql.push_str(&format!(" AND status = ?{}", args.len()));
                }
                if let Some((k, v)) = &filter.tag {
                    args.push(format!("$.\"{k}\""));
                    sql.push_str(&format!(" AND json_extract(tags, ?{}) = ", args.len()));
                    args.push(v.clone());
                    sql.push_str(&format!("?{}", args.len()));
                }
                if let Some(src) = &filter.source_id {
                    args.push(src.clone());
                    sql.push_str(&format!(
                        " AND json_extract(source_ref, '$.sourceId') = ?{}",
                        args.len()
                    ));
                }
                sql.push_str(&format!(" ORDER BY id LIMIT {limit}"));
                let mut stmt = conn
                    .prepare_cached(&sql)
                    .map_err(sql_err("prepare a session listing"))?;
                let rows = stmt
                    .query_map(params_from_iter(args.iter()), session_from_row)
                    .map_err(sql_err("list sessions"))?
                    .map(|r| r.map(|(rec, _)| rec))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sql_err("list sessions"))?;
                Ok(rows)
            })
            .await
    }

    async fn delete_session(&self, tenant: &TenantId, id: &SessionId) -> Result<bool> {
        let (tenant, id) = (tenant.clone(), id.clone());
        let cache = self.cache.clone();
        let gone = id.clone();
        self.db
            .write(
                move |tx| {
                    let Some((_, chain)) = load_session(tx, &tenant, &id)? else {
                        return Ok(false);
                    };
                    release_layer(tx, chain[0])?;
                    let ckpt_layers = tx
                        .prepare_cached("SELECT layer FROM checkpoints WHERE session = ?1")
                        .and_then(|mut s| {
                            s.query_map(params![id.as_str()], |r| r.get::<_, i64>(0))?
                                .collect::<rusqlite::Result<Vec<_>>>()
                        })
                        .map_err(sql_err("list checkpoints"))?;
                    for layer in ckpt_layers {
                        release_layer(tx, layer)?;
                    }
                    for stmt in [
                        "DELETE FROM checkpoints WHERE session = ?1",
                        "DELETE FROM events WHERE session = ?1",
                        "DELETE FROM kv WHERE session = ?1",
                        "DELETE FROM bus WHERE session = ?1",
                        "DELETE FROM secrets WHERE scope = ?1",
                        "DELETE FROM session_stats WHERE session = ?1",
                        "DELETE FROM session_health WHERE session = ?1",
                        "DELETE FROM approvals WHERE session = ?1",
                        "DELETE FROM commits WHERE session = ?1",
                        "DELETE FROM annotations WHERE session = ?1",
                        "DELETE FROM idempotency WHERE scope = ?1",
                        "DELETE FROM sessions WHERE id = ?1",
                    ] {
                        exec(tx, stmt, params![id.as_str()])
                            .map_err(sql_err("delete a session"))?;
                    }
                    Ok(true)
                },
                move |_| {
                    cache.write(|c| {
                        c.sessions.remove(&gone);
                    })
                },
            )
            .await
    }

    async fn set_status(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        from: SessionStatus,
        to: SessionStatus,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<bool> {
        let (tenant, id) = (tenant.clone(), id.clone());
        let cache = self.cache.clone();
        let changed_id = id.clone();
        self.db
            .write(
                move |tx| {
                    let changed = exec(
                        tx,
                        "UPDATE sessions SET status = ?1, last_activity_at = ?2 WHERE id = ?3 AND tenant = ?4 AND status = ?5",
                        params![to.as_str(), event.time.nanos(), id.as_str(), tenant.as_str(), from.as_str()],
                    )
                    .map_err(sql_err("change a session's status"))?;
                    if changed == 0 {
                        return Ok(false);
                    }
                    append_events(tx, &id, &[event])?;
                    remember(tx, &tenant, id.as_str(), &idem)?;
                    Ok(true)
                },
                move |_| cache.write(|c| {
                    c.sessions.remove(&changed_id);
                }),
            )
            .await
    }

    async fn fork_session(
        &self,
        origin: &SessionRecord,
        fork: &SessionRecord,
        origin_event: NewEvent,
        fork_event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        let (origin, fork) = (origin.clone(), fork.clone());
        let cache = self.cache.clone();
        let origin_id = origin.id.clone();
        self.db
            .write(
                move |tx| {
                    let (_, chain) = load_session(tx, &origin.tenant, &origin.id)?
                        .ok_or_else(|| session_not_found(&origin.id))?;
                    let frozen = chain[0];
                    let origin_top = new_layer(tx, Some(frozen))?;
                    let fork_top = new_layer(tx, Some(frozen))?;
                    // The origin no longer owns `frozen` directly; its reference moves to the new top.
                    release_layer(tx, frozen)?;
                    let mut origin_chain = vec![origin_top];
                    origin_chain.extend(&chain);
                    let mut fork_chain = vec![fork_top];
                    fork_chain.extend(&chain);
                    set_chain(tx, &origin.id, &origin_chain)?;
                    insert_session_row(tx, &fork, &fork_chain)?;
                    append_events(tx, &origin.id, &[origin_event])?;
                    append_events(tx, &fork.id, &[fork_event])?;
                    remember(tx, &origin.tenant, origin.id.as_str(), &idem)?;
                    Ok(())
                },
                move |_| {
                    cache.write(|c| {
                        c.sessions.remove(&origin_id);
                    })
                },
            )
            .await
    }

    async fn create_checkpoint(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        checkpoint: &Checkpoint,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        let (tenant, session, checkpoint) = (tenant.clone(), session.clone(), checkpoint.clone());
        let cache = self.cache.clone();
        let changed = session.clone();
        self.db
            .write(
                move |tx| {
                    let (_, chain) = load_session(tx, &tenant, &session)?.ok_or_else(|| session_not_found(&session))?;
                    let frozen = chain[0];
                    // `new_layer` counts the new top's reference to `frozen`; the session's old
                    // reference to it now belongs to the checkpoint.
                    let top = new_layer(tx, Some(frozen))?;
                    exec(
                        tx,
                        "INSERT INTO checkpoints (id, tenant, session, name, generation, created_at, layer, chain) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                        params![
                            checkpoint.id,
                            tenant.as_str(),
                            session.as_str(),
                            checkpoint.name,
                            checkpoint.generation as i64,
                            checkpoint.created_at.nanos(),
                            frozen,
                            format_chain(&chain)
                        ],
                    )
                    .map_err(sql_err("insert a checkpoint"))?;
                    let mut new_chain = vec![top];
                    new_chain.extend(&chain);
                    set_chain(tx, &session, &new_chain)?;
                    append_events(tx, &session, &[event])?;
                    remember(tx, &tenant, session.as_str(), &idem)?;
                    Ok(())
                },
                move |_| cache.write(|c| {
                    c.sessions.remove(&changed);
                }),
            )
            .await
    }

    async fn checkpoint(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        id: &CheckpointId,
    ) -> Result<Option<Checkpoint>> {
        let (tenant, session, id) = (tenant.clone(), session.clone(), id.clone());
        self.db
            .read(move |conn| {
                query_row(
                    conn,
                    "SELECT id, session, name, generation, created_at FROM checkpoints WHERE id = ?1 AND session = ?2 AND tenant = ?3",
                    params![id.as_str(), session.as_str(), tenant.as_str()],
                    checkpoint_from_row,
                )
                .optional()
                .map_err(sql_err("read a checkpoint"))
            })
            .await
    }

    async fn list_checkpoints(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        after: Option<&CheckpointId>,
        limit: usize,
    ) -> Result<Vec<Checkpoint>> {
        let (tenant, session) = (tenant.clone(), session.clone());
        let after = after.map_or_else(String::new, |a| a.as_str().to_owned());
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id, session, name, generation, created_at FROM checkpoints WHERE session = ?1 AND tenant = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
                )
                .and_then(|mut s| {
                    s.query_map(params![session.as_str(), tenant.as_str(), after, limit as i64], checkpoint_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sql_err("list checkpoints"))
            })
            .await
    }

    async fn restore_tree(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        checkpoint: &CheckpointId,
        expected_generation: u64,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<CommitOutcome> {
        let (tenant, session, checkpoint) = (tenant.clone(), session.clone(), checkpoint.clone());
        let cache = self.cache.clone();
        let changed = session.clone();
        self.db
            .write(
                move |tx| {
                    let (rec, chain) = load_session(tx, &tenant, &session)?
                        .ok_or_else(|| session_not_found(&session))?;
                    if recorded(tx, &tenant, session.as_str(), &idem)? {
                        return Ok(CommitOutcome::KeyRecorded);
                    }
                    if rec.generation != expected_generation {
                        return Ok(CommitOutcome::GenerationMoved {
                            current: rec.generation,
                        });
                    }
                    let (layer, ckpt_chain): (i64, String) = query_row(
                        tx,
                        "SELECT layer, chain FROM checkpoints WHERE id = ?1 AND session = ?2",
                        params![checkpoint.as_str(), session.as_str()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(sql_err("read a checkpoint"))?
                    .ok_or_else(|| {
                        Error::not_found(format!("checkpoint {checkpoint} not found"))
                    })?;
                    let top = new_layer(tx, Some(layer))?;
                    release_layer(tx, chain[0])?;
                    let mut new_chain = vec![top];
                    new_chain.extend(parse_chain(&ckpt_chain)?);
                    set_chain(tx, &session, &new_chain)?;
                    let generation = expected_generation + 1;
                    exec(
                        tx,
                        "UPDATE sessions SET generation = ?1, last_activity_at = ?2 WHERE id = ?3",
                        params![generation as i64, event.time.nanos(), session.as_str()],
                    )
                    .map_err(sql_err("advance the generation"))?;
                    append_events(tx, &session, &[event])?;
                    remember(tx, &tenant, session.as_str(), &idem)?;
                    Ok(CommitOutcome::Committed { generation })
                },
                move |_| {
                    cache.write(|c| {
                        c.sessions.remove(&changed);
                    })
                },
            )
            .await
    }

    async fn entry(&self, tree: &TreeRef, path: &SessionPath) -> Result<Option<Entry>> {
        if let TreeRef::Session { tenant, session } = tree
            && let Some((rec, chain)) = self.cache.session(session)
        {
            if &rec.tenant != tenant {
                return Err(session_not_found(session));
            }
            if let Some(found) = self.cache.resolve(&chain, path) {
                return Ok(found);
            }
        }
        let (tree, path) = (tree.clone(), path.clone());
        let epoch = self.cache.epoch();
        let cache = self.cache.clone();
        self.db
            .read(move |conn| {
                let tx = conn.transaction().map_err(sql_err("begin a read"))?;
                let chain = chain_of(&tx, &tree)?;
                let (found, seen) = lookup(&tx, &chain, &path)?;
                cache.fill(epoch, |c| {
                    for (layer, mention) in seen {
                        c.rows.insert((layer, path.clone()), mention);
                    }
                });
                Ok(found)
            })
            .await
    }

    async fn by_inode(&self, tree: &TreeRef, inode: u64) -> Result<Vec<Entry>> {
        let tree = tree.clone();
        self.db
            .read(move |conn| {
                let tx = conn.transaction().map_err(sql_err("begin a read"))?;
                let chain = chain_of(&tx, &tree)?;
                let mut candidates = std::collections::BTreeSet::new();
                for layer in &chain {
                    let paths = tx
                        .prepare_cached("SELECT path FROM entries WHERE layer = ?1 AND inode = ?2 AND present = 1 AND nlink > 1")
                        .and_then(|mut s| s.query_map(params![layer, inode as i64], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>())
                        .map_err(sql_err("find the names of a file"))?;
                    candidates.extend(paths);
                }
                // A lower layer's row may be shadowed: keep the paths that still resolve to this file.
                let mut out = Vec::new();
                for raw in candidates {
                    let path = SessionPath::parse(&raw).map_err(|_| Error::internal("metadata store holds a corrupt path"))?;
                    if let (Some(e), _) = lookup(&tx, &chain, &path)?
                        && e.inode == inode
                    {
                        out.push(e);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn list(&self, tree: &TreeRef, query: &ListQuery) -> Result<(Vec<Entry>, bool)> {
        let (tree, query) = (tree.clone(), query.clone());
        self.db
            .read(move |conn| {
                let tx = conn.transaction().map_err(sql_err("begin a read"))?;
                let chain = chain_of(&tx, &tree)?;
                list(&tx, &chain, &query)
            })
            .await
    }

    async fn commit(&self, commit: TreeCommit) -> Result<CommitOutcome> {
        let cache = self.cache.clone();
        let outcome =
            self.db
                .write(
                    move |tx| {
                        // Only what the commit needs: the generation to compare and the layers to write.
                        let found: Option<(i64, String)> = query_row(
                            tx,
                            "SELECT generation, chain FROM sessions WHERE id = ?1 AND tenant = ?2",
                            params![commit.session.as_str(), commit.tenant.as_str()],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                        .map_err(sql_err("read a session"))?;
                        let (current, chain) =
                            found.ok_or_else(|| session_not_found(&commit.session))?;
                        let chain = parse_chain(&chain)?;
                        for idem in &commit.idempotency {
                            if recorded_key(tx, &commit.tenant, commit.session.as_str(), &idem.key)? {
                                return Ok((CommitOutcome::KeyRecorded, None));
                            }
                        }
                        if current as u64 != commit.expected_generation {
                            return Ok((
                                CommitOutcome::GenerationMoved {
                                    current: current as u64,
                                },
                                None,
                            ));
                        }
                        for change in &commit.changes {
                            apply_change(tx, &chain, change)?;
                        }
                        let generation = commit.generation;
                        if generation <= commit.expected_generation {
                            return Err(Error::internal("a commit must advance the generation"));
                        }
                        let writes = (generation - commit.expected_generation) as i64;
                        // Advance the generation and reserve the events' numbers in one statement.
                        let n = commit.events.len() as i64;
                        let first: i64 = query_row(
                            tx,
                            "UPDATE sessions SET generation = ?1, last_activity_at = ?2, next_event = next_event + ?3 WHERE id = ?4 RETURNING next_event - ?3",
                            params![generation as i64, commit.time.nanos(), n, commit.session.as_str()],
                            |r| r.get(0),
                        )
                        .map_err(sql_err("advance the generation"))?;
                        insert_events(tx, &commit.session, first, &commit.events)?;
                        exec(
                            tx,
                            "INSERT INTO session_stats (session, writes, bytes_written, bytes_read, first_write_at) VALUES (?1, ?4, ?2, 0, ?3) \
                             ON CONFLICT(session) DO UPDATE SET writes = writes + ?4, bytes_written = bytes_written + ?2, first_write_at = coalesce(first_write_at, ?3)",
                            params![commit.session.as_str(), commit.bytes_written as i64, commit.time.nanos(), writes],
                        )
                        .map_err(sql_err("count a write"))?;
                        for idem in &commit.idempotency {
                            remember_one(tx, &commit.tenant, commit.session.as_str(), idem)?;
                        }
                        Ok((
                            CommitOutcome::Committed { generation },
                            Some((chain, commit)),
                        ))
                    },
                    move |(outcome, applied)| {
                        let (Some((chain, commit)), CommitOutcome::Committed { generation }) =
                            (applied, outcome)
                        else {
                            return;
                        };
                        cache.write(|c| {
                            let top = chain[0];
                            for change in &commit.changes {
                                let mention = match &change.entry {
                                    Some(e) => Mention::Entry(e.clone()),
                                    None if chain.len() > 1 => Mention::Whiteout,
                                    None => Mention::Nothing,
                                };
                                c.rows.insert((top, change.path.clone()), mention);
                            }
                            if let Some((rec, _)) = c.sessions.get_mut(&commit.session) {
                                rec.generation = *generation;
                                rec.last_activity_at = commit.time;
                            }
                        })
                    },
                )
                .await?;
        Ok(outcome.0)
    }

    async fn idempotent_outcome(
        &self,
        tenant: &TenantId,
        session: &str,
        key: &str,
    ) -> Result<Option<Outcome>> {
        let (tenant, scope, key) = (tenant.clone(), session.to_owned(), key.to_owned());
        self.db
            .read(move |conn| {
                let raw: Option<String> = query_row(
                    conn,
                    "SELECT outcome FROM idempotency WHERE tenant = ?1 AND scope = ?2 AND key = ?3",
                    params![tenant.as_str(), scope, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql_err("read an idempotency key"))?;
                raw.map(|r| {
                    serde_json::from_str(&r).map_err(|e| backend("decode an idempotent outcome", e))
                })
                .transpose()
            })
            .await
    }

    async fn events(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        query: &EventQuery,
    ) -> Result<Vec<Event>> {
        let (tenant, session, query) = (tenant.clone(), session.clone(), query.clone());
        self.db
            .read(move |conn| {
                let mut sql = String::from(
                    "SELECT e.seq, e.kind, e.path, e.to_path, e.related_id, e.principal, e.generation, e.time FROM events e \
                     JOIN sessions s ON s.id = e.session AND s.tenant = ?1 WHERE e.session = ?2 AND e.seq > ?3",
                );
                let mut args: Vec<rusqlite::types::Value> =
                    vec![tenant.as_str().to_owned().into(), session.as_str().to_owned().into(), (query.after_sequence as i64).into()];
                if let Some(t) = query.since {
                    args.push(t.nanos().into());
                    sql.push_str(&format!(" AND e.time >= ?{}", args.len()));
                }
                if let Some(t) = query.until {
                    args.push(t.nanos().into());
                    sql.push_str(&format!(" AND e.time < ?{}", args.len()));
                }
                if !query.types.is_empty() {
                    let mut marks = Vec::new();
                    for t in &query.types {
                        args.push(t.clone().into());
                        marks.push(format!("?{}", args.len()));
                    }
                    sql.push_str(&format!(" AND e.kind IN ({})", marks.join(", ")));
                }
                sql.push_str(&format!(" ORDER BY e.seq LIMIT {}", query.limit));
                let sid = session.as_str().to_owned();
                conn.prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(params_from_iter(args.iter()), |r| {
                            Ok(Event {
                                sequence: r.get::<_, i64>(0)? as u64,
                                session_id: sid.clone(),
                                kind: r.get(1)?,
                                path: r.get(2)?,
                                to_path: r.get(3)?,
                                related_id: r.get(4)?,
                                principal: r.get(5)?,
                                generation: r.get::<_, i64>(6)? as u64,
                                time: Timestamp(r.get(7)?),
                            })
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(sql_err("read events"))
            })
            .await
    }

    async fn referenced_blobs(
        &self,
        hashes: &[String],
    ) -> Result<std::collections::HashSet<String>> {
        let hashes = hashes.to_vec();
        self.db
            .read(move |conn| {
                let mut out = std::collections::HashSet::new();
                let mut stmt = conn
                    .prepare_cached("SELECT refs FROM blobs WHERE hash = ?1")
                    .map_err(sql_err("prepare a reference check"))?;
                for h in hashes {
                    let refs: Option<i64> = stmt
                        .query_row(params![h], |r| r.get(0))
                        .optional()
                        .map_err(sql_err("check a blob's references"))?;
                    if refs.is_some_and(|r| r > 0) {
                        out.insert(h);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn forget_blobs(&self, hashes: &[String]) -> Result<()> {
        let hashes = hashes.to_vec();
        self.db
            .write(
                move |tx| {
                    for h in &hashes {
                        exec(
                            tx,
                            "DELETE FROM blobs WHERE hash = ?1 AND refs <= 0",
                            params![h],
                        )
                        .map_err(sql_err("forget a blob"))?;
                    }
                    Ok(())
                },
                |_| {},
            )
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.db
            .read(|conn| {
                conn.query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(sql_err("answer a ping"))
            })
            .await
    }

    async fn append_event(&self, session: &SessionId, event: NewEvent) -> Result<()> {
        let session = session.clone();
        self.db
            .write(move |tx| append_events(tx, &session, &[event]), |_| {})
            .await
    }
}

fn checkpoint_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        id: r.get(0)?,
        session_id: r.get(1)?,
        name: r.get(2)?,
        generation: r.get::<_, i64>(3)? as u64,
        created_at: Timestamp(r.get(4)?),
    })
}
