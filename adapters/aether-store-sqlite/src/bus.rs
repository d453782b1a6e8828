//! `BusStore` on SQLite: a session's retained messages as JSON rows keyed by sequence.

use rusqlite::params;

use aether_domain::{Result, SessionId};
use aether_ports::bus::BusMessage;
use aether_ports::store::BusStore;

use crate::backend;
use crate::meta::{SqliteMetadataStore, exec, query_row, sql_err};

impl BusStore for SqliteMetadataStore {
    async fn bus_append(
        &self,
        session: &SessionId,
        mut message: BusMessage,
        retention: usize,
    ) -> Result<BusMessage> {
        let session = session.clone();
        self.db
            .write(
                move |tx| {
                    let last: i64 = query_row(
                        tx,
                        "SELECT coalesce(max(seq), 0) FROM bus WHERE session = ?1",
                        params![session.as_str()],
                        |r| r.get(0),
                    )
                    .map_err(sql_err("number a bus message"))?;
                    message.sequence = last as u64 + 1;
                    let body = serde_json::to_string(&message)
                        .map_err(|e| backend("encode a bus message", e))?;
                    exec(
                        tx,
                        "INSERT INTO bus (session, seq, body) VALUES (?1, ?2, ?3)",
                        params![session.as_str(), message.sequence as i64, body],
                    )
                    .map_err(sql_err("store a bus message"))?;
                    exec(
                        tx,
                        "DELETE FROM bus WHERE session = ?1 AND seq <= ?2",
                        params![session.as_str(), message.sequence as i64 - retention as i64],
                    )
                    .map_err(sql_err("drop old bus messages"))?;
                    Ok(message)
                },
                |_| {},
            )
            .await
    }

    async fn bus_retained(&self, session: &SessionId) -> Result<Vec<BusMessage>> {
        let session = session.clone();
        self.db
            .read(move |conn| {
                let rows: Vec<String> = conn
                    .prepare_cached("SELECT body FROM bus WHERE session = ?1 ORDER BY seq")
                    .and_then(|mut s| {
                        s.query_map(params![session.as_str()], |r| r.get(0))?
                            .collect::<rusqlite::Result<Vec<String>>>()
                    })
                    .map_err(sql_err("read bus messages"))?;
                rows.iter()
                    .map(|b| {
                        serde_json::from_str(b).map_err(|e| backend("decode a bus message", e))
                    })
                    .collect()
            })
            .await
    }
}
