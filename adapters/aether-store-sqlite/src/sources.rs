//! `SourceStore` on SQLite: sources, revisions and jobs as JSON bodies, and sessions created
//! over a revision's checkpoint (a new layer on its frozen chain: O(1) in the tree's size).

use rusqlite::{Connection, OptionalExtension, params};

use aether_domain::{CheckpointId, Entry, Result, SessionId, TenantId};
use aether_ports::sources::{Job, Source};
use aether_ports::store::*;

use crate::backend;
use crate::meta::{
    SqliteMetadataStore, append_events, exec, insert_session_row, new_layer, remember, sql_err,
};
use crate::rows::parse_chain;

fn encode<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| backend("encode a source record", e))
}

fn decode<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| backend("decode a source record", e))
}

fn source_row(raw: (String, String)) -> Result<SourceRecord> {
    Ok(SourceRecord {
        source: decode(&raw.1)?,
        holder: SessionId::parse(&raw.0)?,
    })
}

fn put_source_row(tx: &Connection, tenant: &TenantId, source: &Source) -> Result<()> {
    let n = exec(
        tx,
        "UPDATE sources SET body = ?3 WHERE tenant = ?1 AND id = ?2",
        params![tenant.as_str(), source.id, encode(source)?],
    )
    .map_err(sql_err("update a source"))?;
    if n == 0 {
        return Err(aether_domain::Error::not_found(format!(
            "source {} not found",
            source.id
        )));
    }
    Ok(())
}

impl SourceStore for SqliteMetadataStore {
    async fn insert_source(
        &self,
        record: &SourceRecord,
        holder: &SessionRecord,
        root: &Entry,
    ) -> Result<()> {
        let (record, holder, root) = (record.clone(), holder.clone(), root.clone());
        let body = encode(&record.source)?;
        self.db
            .write(
                move |tx| {
                    let layer = new_layer(tx, None)?;
                    crate::meta::put_entry(tx, layer, &root)?;
                    insert_session_row(tx, &holder, &[layer])?;
                    exec(
                        tx,
                        "INSERT INTO sources (tenant, id, holder, body) VALUES (?1, ?2, ?3, ?4)",
                        params![
                            holder.tenant.as_str(),
                            record.source.id,
                            holder.id.as_str(),
                            body
                        ],
                    )
                    .map_err(sql_err("insert a source"))?;
                    Ok(())
                },
                |_| {},
            )
            .await
    }

    async fn source(&self, tenant: &TenantId, id: &str) -> Result<Option<SourceRecord>> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.db
            .read(move |conn| {
                let row: Option<(String, String)> = conn
                    .prepare_cached(
                        "SELECT holder, body FROM sources WHERE tenant = ?1 AND id = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![tenant.as_str(), id], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(sql_err("read a source"))?;
                row.map(source_row).transpose()
            })
            .await
    }

    async fn list_sources(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SourceRecord>> {
        let (tenant, after) = (tenant.clone(), after.unwrap_or_default().to_owned());
        self.db
            .read(move |conn| {
                let rows: Vec<(String, String)> = conn
                    .prepare_cached(
                        "SELECT holder, body FROM sources WHERE tenant = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                    )
                    .and_then(|mut s| {
                        s.query_map(params![tenant.as_str(), after, limit as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .map_err(sql_err("list sources"))?;
                rows.into_iter().map(source_row).collect()
            })
            .await
    }

    async fn put_source(&self, tenant: &TenantId, source: &Source) -> Result<()> {
        let (tenant, source) = (tenant.clone(), source.clone());
        self.db
            .write(move |tx| put_source_row(tx, &tenant, &source), |_| {})
            .await
    }

    async fn insert_revision(
        &self,
        tenant: &TenantId,
        revision: &RevisionRecord,
        source: &Source,
    ) -> Result<()> {
        let (tenant, revision, source) = (tenant.clone(), revision.clone(), source.clone());
        let body = encode(&revision.revision)?;
        self.db
            .write(
                move |tx| {
                    exec(
                        tx,
                        "INSERT INTO revisions (source, id, checkpoint, body) VALUES (?1, ?2, ?3, ?4)",
                        params![
                            revision.revision.source_id,
                            revision.revision.id,
                            revision.checkpoint.as_str(),
                            body
                        ],
                    )
                    .map_err(sql_err("insert a revision"))?;
                    put_source_row(tx, &tenant, &source)
                },
                |_| {},
            )
            .await
    }

    async fn revision(
        &self,
        tenant: &TenantId,
        source_id: &str,
        revision_id: &str,
    ) -> Result<Option<RevisionRecord>> {
        let (tenant, source_id, revision_id) =
            (tenant.clone(), source_id.to_owned(), revision_id.to_owned());
        self.db
            .read(move |conn| {
                let row: Option<(String, String)> = conn
                    .prepare_cached(
                        "SELECT r.checkpoint, r.body FROM revisions r JOIN sources s ON s.id = r.source WHERE s.tenant = ?1 AND r.source = ?2 AND r.id = ?3",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![tenant.as_str(), source_id, revision_id], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()
                    })
                    .map_err(sql_err("read a revision"))?;
                row.map(|(ckpt, body)| {
                    Ok(RevisionRecord {
                        revision: decode(&body)?,
                        checkpoint: CheckpointId::parse(&ckpt)?,
                    })
                })
                .transpose()
            })
            .await
    }

    async fn put_job(&self, _tenant: &TenantId, job: &Job) -> Result<()> {
        let job = job.clone();
        let body = encode(&job)?;
        self.db
            .write(
                move |tx| {
                    exec(
                        tx,
                        "INSERT OR REPLACE INTO jobs (source, id, body) VALUES (?1, ?2, ?3)",
                        params![job.source_id, job.id, body],
                    )
                    .map_err(sql_err("store a job"))?;
                    Ok(())
                },
                |_| {},
            )
            .await
    }

    async fn job(&self, tenant: &TenantId, source_id: &str, job_id: &str) -> Result<Option<Job>> {
        let (tenant, source_id, job_id) = (tenant.clone(), source_id.to_owned(), job_id.to_owned());
        self.db
            .read(move |conn| {
                let body: Option<String> = conn
                    .prepare_cached(
                        "SELECT j.body FROM jobs j JOIN sources s ON s.id = j.source WHERE s.tenant = ?1 AND j.source = ?2 AND j.id = ?3",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![tenant.as_str(), source_id, job_id], |r| r.get(0))
                            .optional()
                    })
                    .map_err(sql_err("read a job"))?;
                body.as_deref().map(decode).transpose()
            })
            .await
    }

    async fn insert_session_at(
        &self,
        holder: &SessionId,
        at: &CheckpointId,
        session: &SessionRecord,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> Result<()> {
        let (holder, at, session) = (holder.clone(), at.clone(), session.clone());
        self.db
            .write(
                move |tx| {
                    let (layer, chain): (i64, String) = tx
                        .prepare_cached(
                            "SELECT layer, chain FROM checkpoints WHERE id = ?1 AND session = ?2",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![at.as_str(), holder.as_str()], |r| {
                                Ok((r.get(0)?, r.get(1)?))
                            })
                        })
                        .map_err(sql_err("read a revision's checkpoint"))?;
                    // The checkpoint's chain starts at its own frozen layer.
                    let chain = parse_chain(&chain)?;
                    let top = new_layer(tx, Some(layer))?;
                    let mut full = vec![top];
                    full.extend(chain);
                    insert_session_row(tx, &session, &full)?;
                    append_events(tx, &session.id, &[event])?;
                    remember(tx, &session.tenant, "", &idem)
                },
                |_| {},
            )
            .await
    }
}
