//! `SecretStore` on SQLite: sealed values by (tenant, scope, name) with a version.

use rusqlite::{OptionalExtension, params};

use aether_domain::{Result, Timestamp};
use aether_ports::store::{SecretHome, SecretRecord, SecretStore};

use crate::meta::{SqliteMetadataStore, exec, sql_err};

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<SecretRecord> {
    Ok(SecretRecord {
        scope_key: r.get(0)?,
        name: r.get(1)?,
        sealed: r.get(2)?,
        version: r.get::<_, i64>(3)? as u64,
        updated_at: Timestamp::from_nanos(r.get(4)?),
    })
}

impl SecretStore for SqliteMetadataStore {
    async fn put_secret(
        &self,
        home: &SecretHome,
        name: &str,
        sealed: Vec<u8>,
        now: Timestamp,
    ) -> Result<SecretRecord> {
        let (home, name) = (home.clone(), name.to_owned());
        self.db
            .write(
                move |tx| {
                    let version: i64 = tx
                        .prepare_cached(
                            "SELECT version FROM secrets WHERE tenant = ?1 AND scope = ?2 AND name = ?3",
                        )
                        .and_then(|mut s| {
                            s.query_row(params![home.0, home.1, name], |r| r.get(0)).optional()
                        })
                        .map_err(sql_err("read a secret's version"))?
                        .unwrap_or(0)
                        + 1;
                    exec(
                        tx,
                        "INSERT OR REPLACE INTO secrets (tenant, scope, name, sealed, version, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![home.0, home.1, name, sealed, version, now.nanos()],
                    )
                    .map_err(sql_err("store a secret"))?;
                    Ok(SecretRecord {
                        scope_key: home.1,
                        name,
                        sealed,
                        version: version as u64,
                        updated_at: now,
                    })
                },
                |_| {},
            )
            .await
    }

    async fn secret(&self, home: &SecretHome, name: &str) -> Result<Option<SecretRecord>> {
        let (home, name) = (home.clone(), name.to_owned());
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT scope, name, sealed, version, updated_at FROM secrets WHERE tenant = ?1 AND scope = ?2 AND name = ?3",
                )
                .and_then(|mut s| s.query_row(params![home.0, home.1, name], record).optional())
                .map_err(sql_err("read a secret"))
            })
            .await
    }

    async fn secrets(&self, homes: &[SecretHome]) -> Result<Vec<SecretRecord>> {
        let homes = homes.to_vec();
        self.db
            .read(move |conn| {
                let mut out: Vec<(usize, SecretRecord)> = Vec::new();
                for (i, home) in homes.iter().enumerate() {
                    let rows = conn
                        .prepare_cached(
                            "SELECT scope, name, sealed, version, updated_at FROM secrets WHERE tenant = ?1 AND scope = ?2",
                        )
                        .and_then(|mut s| {
                            s.query_map(params![home.0, home.1], record)?
                                .collect::<rusqlite::Result<Vec<_>>>()
                        })
                        .map_err(sql_err("list secrets"))?;
                    out.extend(rows.into_iter().map(|r| (i, r)));
                }
                out.sort_by(|a, b| a.1.name.cmp(&b.1.name).then(a.0.cmp(&b.0)));
                Ok(out.into_iter().map(|(_, r)| r).collect())
            })
            .await
    }

    async fn delete_secret(&self, home: &SecretHome, name: &str) -> Result<bool> {
        let (home, name) = (home.clone(), name.to_owned());
        self.db
            .write(
                move |tx| {
                    let n = exec(
                        tx,
                        "DELETE FROM secrets WHERE tenant = ?1 AND scope = ?2 AND name = ?3",
                        params![home.0, home.1, name],
                    )
                    .map_err(sql_err("delete a secret"))?;
                    Ok(n > 0)
                },
                |_| {},
            )
            .await
    }
}
