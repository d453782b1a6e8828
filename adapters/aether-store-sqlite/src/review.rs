//! `ReviewStore` on SQLite: approvals, commits and annotations as JSON bodies keyed by
//! (session, id), each written with its event, status change and idempotency record.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;

use aether_domain::{Result, SessionId, TenantId};
use aether_ports::review::{Annotation, Approval, Commit};
use aether_ports::store::*;

use crate::backend;
use crate::meta::{SqliteMetadataStore, append_events, exec, remember, sql_err};

fn encode<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| backend("encode a review record", e))
}

fn decode<T: DeserializeOwned>(raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| backend("decode a review record", e))
}

/// Moves the session's status as `change` says; false when it is no longer in the `from` state.
fn change_status(
    tx: &Connection,
    tenant: &TenantId,
    session: &SessionId,
    change: StatusChange,
    time: aether_domain::Timestamp,
) -> Result<bool> {
    let Some((from, to)) = change else {
        return Ok(true);
    };
    let n = exec(
        tx,
        "UPDATE sessions SET status = ?1, last_activity_at = ?2 WHERE id = ?3 AND tenant = ?4 AND status = ?5",
        params![to.as_str(), time.nanos(), session.as_str(), tenant.as_str(), from.as_str()],
    )
    .map_err(sql_err("change a session's status"))?;
    Ok(n == 1)
}

fn one<T: DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    session: &str,
    id: &str,
) -> Result<Option<T>> {
    let raw: Option<String> = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_row(params![session, id], |r| r.get(0)).optional())
        .map_err(sql_err("read a review record"))?;
    raw.as_deref().map(decode).transpose()
}

fn page<T: DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<T>> {
    let rows: Vec<String> = conn
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(p, |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(sql_err("list review records"))?;
    rows.iter().map(|r| decode(r)).collect()
}

impl ReviewStore for SqliteMetadataStore {
    async fn insert_approval(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        approval: &Approval,
        status: StatusChange,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<bool> {
        let (tenant, session) = (tenant.clone(), session.clone());
        let body = encode(approval)?;
        let (id, stored, generation) = (
            approval.id.clone(),
            approval.status.clone(),
            approval.generation,
        );
        let cache = self.cache.clone();
        let changed = session.clone();
        self.db
            .write(
                move |tx| {
                    if !change_status(tx, &tenant, &session, status, event.time)? {
                        return Ok(false);
                    }
                    exec(
                        tx,
                        "INSERT INTO approvals (session, id, status, generation, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![session.as_str(), id, stored, generation as i64, body],
                    )
                    .map_err(sql_err("insert an approval"))?;
                    append_events(tx, &session, &[event])?;
                    remember(tx, &tenant, session.as_str(), &idem)?;
                    Ok(true)
                },
                move |_| cache.write(|c| {
                    c.sessions.remove(&changed);
                }),
            )
            .await
    }

    async fn approval(&self, session: &SessionId, id: &str) -> Result<Option<Approval>> {
        let (session, id) = (session.clone(), id.to_owned());
        self.db
            .read(move |conn| {
                one(
                    conn,
                    "SELECT body FROM approvals WHERE session = ?1 AND id = ?2",
                    session.as_str(),
                    &id,
                )
            })
            .await
    }

    async fn list_approvals(
        &self,
        session: &SessionId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Approval>> {
        let (session, after) = (session.clone(), after.unwrap_or_default().to_owned());
        self.db
            .read(move |conn| {
                page(
                    conn,
                    "SELECT body FROM approvals WHERE session = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                    params![session.as_str(), after, limit as i64],
                )
            })
            .await
    }

    async fn decide_approval(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        decided: &Approval,
        status: StatusChange,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<bool> {
        let (tenant, session) = (tenant.clone(), session.clone());
        let body = encode(decided)?;
        let (id, verdict, generation) = (
            decided.id.clone(),
            decided.status.clone(),
            decided.generation,
        );
        let cache = self.cache.clone();
        let changed = session.clone();
        self.db
            .write(
                move |tx| {
                    // Still pending, and nothing written since it was requested.
                    let current: Option<(String, i64)> = tx
                        .prepare_cached(
                            "SELECT a.status, s.generation FROM approvals a JOIN sessions s ON s.id = a.session WHERE a.session = ?1 AND a.id = ?2",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![session.as_str(), id], |r| Ok((r.get(0)?, r.get(1)?)))
                                .optional()
                        })
                        .map_err(sql_err("read an approval"))?;
                    match current {
                        Some((s, g)) if s == "PENDING" && g as u64 == generation => {}
                        _ => return Ok(false),
                    }
                    if !change_status(tx, &tenant, &session, status, event.time)? {
                        return Ok(false);
                    }
                    exec(
                        tx,
                        "UPDATE approvals SET status = ?3, body = ?4 WHERE session = ?1 AND id = ?2",
                        params![session.as_str(), id, verdict, body],
                    )
                    .map_err(sql_err("decide an approval"))?;
                    append_events(tx, &session, &[event])?;
                    remember(tx, &tenant, session.as_str(), &idem)?;
                    Ok(true)
                },
                move |_| cache.write(|c| {
                    c.sessions.remove(&changed);
                }),
            )
            .await
    }

    async fn insert_commit(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        commit: &Commit,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        let (tenant, session) = (tenant.clone(), session.clone());
        let (id, body) = (commit.id.clone(), encode(commit)?);
        self.db
            .write(
                move |tx| {
                    exec(
                        tx,
                        "INSERT INTO commits (session, id, body) VALUES (?1, ?2, ?3)",
                        params![session.as_str(), id, body],
                    )
                    .map_err(sql_err("insert a commit"))?;
                    append_events(tx, &session, &[event])?;
                    remember(tx, &tenant, session.as_str(), &idem)
                },
                |_| {},
            )
            .await
    }

    async fn list_commits(
        &self,
        session: &SessionId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Commit>> {
        let (session, after) = (session.clone(), after.unwrap_or_default().to_owned());
        self.db
            .read(move |conn| {
                page(
                    conn,
                    "SELECT body FROM commits WHERE session = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                    params![session.as_str(), after, limit as i64],
                )
            })
            .await
    }

    async fn put_annotation(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        annotation: &Annotation,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        let (tenant, session) = (tenant.clone(), session.clone());
        let (id, status, body) = (
            annotation.id.clone(),
            annotation.status.clone(),
            encode(annotation)?,
        );
        self.db
            .write(
                move |tx| {
                    exec(
                        tx,
                        "INSERT OR REPLACE INTO annotations (session, id, status, body) VALUES (?1, ?2, ?3, ?4)",
                        params![session.as_str(), id, status, body],
                    )
                    .map_err(sql_err("store an annotation"))?;
                    append_events(tx, &session, &[event])?;
                    remember(tx, &tenant, session.as_str(), &idem)
                },
                |_| {},
            )
            .await
    }

    async fn annotation(&self, session: &SessionId, id: &str) -> Result<Option<Annotation>> {
        let (session, id) = (session.clone(), id.to_owned());
        self.db
            .read(move |conn| {
                one(
                    conn,
                    "SELECT body FROM annotations WHERE session = ?1 AND id = ?2",
                    session.as_str(),
                    &id,
                )
            })
            .await
    }

    async fn list_annotations(
        &self,
        session: &SessionId,
        status: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Annotation>> {
        let (session, after) = (session.clone(), after.unwrap_or_default().to_owned());
        let status = status.map(str::to_owned);
        self.db
            .read(move |conn| {
                page(
                    conn,
                    "SELECT body FROM annotations WHERE session = ?1 AND id > ?2 AND (?3 IS NULL OR status = ?3) ORDER BY id LIMIT ?4",
                    params![session.as_str(), after, status, limit as i64],
                )
            })
            .await
    }
}
