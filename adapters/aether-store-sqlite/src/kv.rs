//! `KnowledgeStore` on SQLite: one `kv` row per (session, key); deleted keys keep their row
//! (value NULL) so versions never repeat; expiry is decided at read time against `now`.

use rusqlite::{Connection, OptionalExtension, params};

use aether_domain::knowledge::{cas_allows, is_live, next_version};
use aether_domain::{Result, SessionId, TenantId, Timestamp};
use aether_ports::store::*;

use crate::meta::{SqliteMetadataStore, append_events, exec, remember, sql_err};

/// A row as stored, present or not.
struct Row {
    record: KvRecord,
    deleted: bool,
}

impl Row {
    fn present(self, now: Timestamp) -> Option<KvRecord> {
        (!self.deleted && is_live(self.record.expires_at, now)).then_some(self.record)
    }
}

fn read_row(conn: &Connection, session: &str, key: &str) -> Result<Option<Row>> {
    conn.prepare_cached(
        "SELECT value, version, created_at, updated_at, ttl, expires_at FROM kv WHERE session = ?1 AND key = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![session, key], |r| {
            let value: Option<Vec<u8>> = r.get(0)?;
            Ok(Row {
                deleted: value.is_none(),
                record: KvRecord {
                    key: key.to_owned(),
                    value: value.unwrap_or_default(),
                    version: r.get::<_, i64>(1)? as u64,
                    created_at: Timestamp::from_nanos(r.get(2)?),
                    updated_at: Timestamp::from_nanos(r.get(3)?),
                    ttl_seconds: r.get::<_, Option<i64>>(4)?.map(|t| t as u64),
                    expires_at: r.get::<_, Option<i64>>(5)?.map(Timestamp::from_nanos),
                },
            })
        })
        .optional()
    })
    .map_err(sql_err("read a cache key"))
}

/// SQL condition for a present row at `?now`.
const PRESENT: &str = "value IS NOT NULL AND (expires_at IS NULL OR expires_at > ?2)";

impl KnowledgeStore for SqliteMetadataStore {
    async fn kv_get(
        &self,
        session: &SessionId,
        keys: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<KvRecord>>> {
        let (session, keys) = (session.clone(), keys.to_vec());
        self.db
            .read(move |conn| {
                keys.iter()
                    .map(|k| Ok(read_row(conn, session.as_str(), k)?.and_then(|r| r.present(now))))
                    .collect()
            })
            .await
    }

    async fn kv_write(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        writes: Vec<KvWrite>,
        now: Timestamp,
        event: NewEvent,
        idem: Option<KvIdempotency>,
    ) -> Result<KvWriteOutcome> {
        let (tenant, session) = (tenant.clone(), session.clone());
        self.db
            .write(
                move |tx| {
                    // Every precondition first: a call applies whole or not at all.
                    for w in &writes {
                        if let Some(expected) = w.expected_version {
                            let current = read_row(tx, session.as_str(), &w.key)?
                                .and_then(|r| r.present(now))
                                .map_or(0, |r| r.version);
                            if !cas_allows(current, expected) {
                                return Ok(KvWriteOutcome::VersionMoved {
                                    key: w.key.clone(),
                                    current,
                                });
                            }
                        }
                    }
                    let mut written = Vec::with_capacity(writes.len());
                    let mut events = Vec::with_capacity(writes.len());
                    for w in writes {
                        let row = read_row(tx, session.as_str(), &w.key)?;
                        let last = row.as_ref().map_or(0, |r| r.record.version);
                        let present = row.and_then(|r| r.present(now));
                        let record = KvRecord {
                            version: next_version(last),
                            created_at: present.map_or(now, |r| r.created_at),
                            updated_at: now,
                            ttl_seconds: w.ttl_seconds,
                            expires_at: w.expires_at,
                            key: w.key,
                            value: w.value,
                        };
                        exec(
                            tx,
                            "INSERT OR REPLACE INTO kv (session, key, value, version, created_at, updated_at, ttl, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                            params![
                                session.as_str(),
                                record.key,
                                record.value,
                                record.version as i64,
                                record.created_at.nanos(),
                                record.updated_at.nanos(),
                                record.ttl_seconds.map(|t| t as i64),
                                record.expires_at.map(Timestamp::nanos),
                            ],
                        )
                        .map_err(sql_err("write a cache key"))?;
                        events.push(NewEvent {
                            related_id: Some(record.key.clone()),
                            ..event.clone()
                        });
                        written.push(record);
                    }
                    append_events(tx, &session, &events)?;
                    let idem = idem.map(|i| i.record(&written, &[]));
                    remember(tx, &tenant, session.as_str(), &idem)?;
                    Ok(KvWriteOutcome::Written(written))
                },
                |_| {},
            )
            .await
    }

    async fn kv_delete(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        which: KvSelection,
        now: Timestamp,
        event: NewEvent,
        idem: Option<KvIdempotency>,
    ) -> Result<Vec<String>> {
        let (tenant, session) = (tenant.clone(), session.clone());
        self.db
            .write(
                move |tx| {
                    let (deleted, events) = match which {
                        KvSelection::Keys(keys) => {
                            let mut deleted = Vec::new();
                            for key in keys {
                                let n = exec(
                                    tx,
                                    &format!("UPDATE kv SET value = NULL, updated_at = ?2 WHERE session = ?1 AND key = ?3 AND {PRESENT}"),
                                    params![session.as_str(), now.nanos(), key],
                                )
                                .map_err(sql_err("delete a cache key"))?;
                                if n > 0 {
                                    deleted.push(key);
                                }
                            }
                            let events = deleted
                                .iter()
                                .map(|k| NewEvent {
                                    related_id: Some(k.clone()),
                                    ..event.clone()
                                })
                                .collect();
                            (deleted, events)
                        }
                        KvSelection::Prefix(prefix) => {
                            let deleted = tx
                                .prepare_cached(&format!(
                                    "UPDATE kv SET value = NULL, updated_at = ?2 WHERE session = ?1 AND key >= ?3 AND substr(key, 1, length(?3)) = ?3 AND {PRESENT} RETURNING key"
                                ))
                                .and_then(|mut s| {
                                    s.query_map(params![session.as_str(), now.nanos(), prefix], |r| r.get(0))?
                                        .collect::<rusqlite::Result<Vec<String>>>()
                                })
                                .map_err(sql_err("delete cache keys by prefix"))?;
                            let events = if deleted.is_empty() {
                                Vec::new()
                            } else {
                                vec![NewEvent {
                                    related_id: Some(prefix),
                                    ..event
                                }]
                            };
                            (deleted, events)
                        }
                    };
                    append_events(tx, &session, &events)?;
                    let idem = idem.map(|i| i.record(&[], &deleted));
                    remember(tx, &tenant, session.as_str(), &idem)?;
                    Ok(deleted)
                },
                |_| {},
            )
            .await
    }

    async fn kv_keys(
        &self,
        session: &SessionId,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<(Vec<String>, bool)> {
        let (session, prefix) = (session.clone(), prefix.to_owned());
        let after = after.map(str::to_owned);
        self.db
            .read(move |conn| {
                // Keys sort by their bytes (SQLite's BINARY collation), as the page token assumes.
                let start = match &after {
                    Some(a) if a.as_str() >= prefix.as_str() => a.clone(),
                    _ => prefix.clone(),
                };
                let strict = after.as_deref() == Some(start.as_str());
                let mut keys = conn
                    .prepare_cached(&format!(
                        "SELECT key FROM kv WHERE session = ?1 AND key >= ?3 AND substr(key, 1, length(?4)) = ?4 AND {PRESENT} ORDER BY key LIMIT ?5"
                    ))
                    .and_then(|mut s| {
                        s.query_map(
                            params![session.as_str(), now.nanos(), start, prefix, (limit + 2) as i64],
                            |r| r.get::<_, String>(0),
                        )?
                        .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(sql_err("list cache keys"))?;
                if strict && keys.first() == Some(&start) {
                    keys.remove(0);
                }
                let more = keys.len() > limit;
                keys.truncate(limit);
                Ok((keys, more))
            })
            .await
    }

    async fn kv_stats(&self, session: &SessionId, now: Timestamp) -> Result<(u64, u64)> {
        let session = session.clone();
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT count(*), coalesce(sum(length(value)), 0) FROM kv WHERE session = ?1 AND {PRESENT}"
                ))
                .and_then(|mut s| {
                    s.query_row(params![session.as_str(), now.nanos()], |r| {
                        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                    })
                })
                .map_err(sql_err("count cache keys"))
            })
            .await
    }
}
