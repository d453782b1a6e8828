//! `InsightStore` on SQLite: health reports, per-session counters, a tenant's footprint and
//! the blob reference histogram.

use std::collections::BTreeSet;

use rusqlite::{OptionalExtension, params};

use aether_domain::{EntryKind, Result, SessionId, TenantId, Timestamp};
use aether_ports::insight::SessionHealth;
use aether_ports::store::*;

use crate::backend;
use crate::meta::{SqliteMetadataStore, exec, query_row, sql_err};
use crate::rows::{kind_code, parse_chain};

impl InsightStore for SqliteMetadataStore {
    async fn put_health(&self, session: &SessionId, health: &SessionHealth) -> Result<()> {
        let session = session.clone();
        let body =
            serde_json::to_string(health).map_err(|e| backend("encode a health report", e))?;
        self.db
            .write(
                move |tx| {
                    exec(
                        tx,
                        "INSERT OR REPLACE INTO session_health (session, body) VALUES (?1, ?2)",
                        params![session.as_str(), body],
                    )
                    .map_err(sql_err("store a health report"))?;
                    Ok(())
                },
                |_| {},
            )
            .await
    }

    async fn health(&self, session: &SessionId) -> Result<Option<SessionHealth>> {
        let session = session.clone();
        self.db
            .read(move |conn| {
                let body: Option<String> = conn
                    .prepare_cached("SELECT body FROM session_health WHERE session = ?1")
                    .and_then(|mut s| {
                        s.query_row(params![session.as_str()], |r| r.get(0))
                            .optional()
                    })
                    .map_err(sql_err("read a health report"))?;
                body.map(|b| {
                    serde_json::from_str(&b).map_err(|e| backend("decode a health report", e))
                })
                .transpose()
            })
            .await
    }

    async fn session_stats(&self, session: &SessionId) -> Result<SessionStats> {
        let session = session.clone();
        self.db
            .read(move |conn| {
                let mut stats = conn
                    .prepare_cached(
                        "SELECT writes, bytes_written, bytes_read, first_write_at FROM session_stats WHERE session = ?1",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![session.as_str()], |r| {
                            Ok(SessionStats {
                                writes: r.get::<_, i64>(0)? as u64,
                                bytes_written: r.get::<_, i64>(1)? as u64,
                                bytes_read: r.get::<_, i64>(2)? as u64,
                                first_write_at: r.get::<_, Option<i64>>(3)?.map(Timestamp::from_nanos),
                                ..Default::default()
                            })
                        })
                        .optional()
                    })
                    .map_err(sql_err("read session counters"))?
                    .unwrap_or_default();
                let count = |kind: &str| -> Result<u64> {
                    query_row(
                        conn,
                        "SELECT count(*) FROM events WHERE session = ?1 AND kind = ?2",
                        params![session.as_str(), kind],
                        |r| r.get::<_, i64>(0),
                    )
                    .map(|n| n as u64)
                    .map_err(sql_err("count events"))
                };
                stats.checkpoints = count("CHECKPOINT_CREATED")?;
                stats.restores = count("RESTORED")?;
                Ok(stats)
            })
            .await
    }

    async fn add_bytes_read(&self, reads: Vec<(SessionId, u64)>) -> Result<()> {
        self.db
            .write(
                move |tx| {
                    for (session, bytes) in &reads {
                        exec(
                            tx,
                            "INSERT INTO session_stats (session, writes, bytes_written, bytes_read) VALUES (?1, 0, 0, ?2) \
                             ON CONFLICT(session) DO UPDATE SET bytes_read = bytes_read + ?2",
                            params![session.as_str(), *bytes as i64],
                        )
                        .map_err(sql_err("count bytes read"))?;
                    }
                    Ok(())
                },
                |_| {},
            )
            .await
    }

    async fn tenant_footprint(&self, tenant: &TenantId) -> Result<TenantFootprint> {
        let tenant = tenant.clone();
        self.db
            .read(move |conn| {
                let rows: Vec<(String, i64, String)> = conn
                    .prepare_cached("SELECT id, created_at, chain FROM sessions WHERE tenant = ?1")
                    .and_then(|mut s| {
                        s.query_map(params![tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(sql_err("list a tenant's sessions"))?;
                let mut layers = BTreeSet::new();
                let mut foot = TenantFootprint::default();
                for (id, created, chain) in &rows {
                    layers.extend(parse_chain(chain)?);
                    if !is_holder(id) {
                        foot.sessions_created.push(Timestamp::from_nanos(*created));
                    }
                }
                let checkpoint_chains: Vec<String> = conn
                    .prepare_cached("SELECT chain FROM checkpoints WHERE tenant = ?1")
                    .and_then(|mut s| {
                        s.query_map(params![tenant.as_str()], |r| r.get(0))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(sql_err("list a tenant's checkpoints"))?;
                for c in &checkpoint_chains {
                    layers.extend(parse_chain(c)?);
                }
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT coalesce(sum(size), 0) FROM entries WHERE layer = ?1 AND present = 1 AND kind = ?2",
                    )
                    .map_err(sql_err("prepare a size query"))?;
                for layer in layers {
                    let bytes: i64 = stmt
                        .query_row(params![layer, kind_code(EntryKind::File)], |r| r.get(0))
                        .map_err(sql_err("sum a layer"))?;
                    foot.stored_bytes += bytes as u64;
                }
                foot.egress_bytes = query_row(
                    conn,
                    "SELECT coalesce(sum(st.bytes_read), 0) FROM session_stats st JOIN sessions s ON s.id = st.session WHERE s.tenant = ?1",
                    params![tenant.as_str()],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(sql_err("sum bytes read"))? as u64;
                Ok(foot)
            })
            .await
    }

    async fn refcount_histogram(&self) -> Result<Vec<(u64, u64)>> {
        self.db
            .read(|conn| {
                conn.prepare_cached(
                    "SELECT refs, count(*) FROM blobs WHERE refs > 0 GROUP BY refs ORDER BY refs",
                )
                .and_then(|mut s| {
                    s.query_map([], |r| {
                        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(sql_err("count blob references"))
            })
            .await
    }

    async fn session_counts(&self) -> Result<Vec<(aether_domain::SessionStatus, u64)>> {
        self.db
            .read(|conn| {
                let rows = conn
                    .prepare_cached("SELECT id, status FROM sessions")
                    .and_then(|mut s| {
                        s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(sql_err("count sessions"))?;
                let mut counts = std::collections::HashMap::new();
                for (id, status) in rows.iter().filter(|(id, _)| !is_holder(id)) {
                    let status = aether_domain::SessionStatus::parse(status).map_err(|e| {
                        aether_domain::Error::internal(format!(
                            "session {id} has a stored status that is not known: {}",
                            e.message
                        ))
                    })?;
                    *counts.entry(status).or_insert(0u64) += 1;
                }
                let mut counts: Vec<_> = counts.into_iter().collect();
                counts.sort_by_key(|(s, _): &(aether_domain::SessionStatus, u64)| s.as_str());
                Ok(counts)
            })
            .await
    }
}
