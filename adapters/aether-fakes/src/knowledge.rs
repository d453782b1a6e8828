//! `KnowledgeStore` in memory: each session's keys in a sorted map, deleted keys kept (flagged)
//! for their version, expiry decided at read time like the SQLite store.

use aether_domain::knowledge::{cas_allows, is_live, next_version};
use aether_domain::{Result, SessionId, TenantId, Timestamp};
use aether_ports::store::*;

use crate::memory::{MemoryMetadataStore, append, remember, stored};

fn present(entry: Option<&(KvRecord, bool)>, now: Timestamp) -> Option<&KvRecord> {
    entry
        .filter(|(r, deleted)| !deleted && is_live(r.expires_at, now))
        .map(|(r, _)| r)
}

impl KnowledgeStore for MemoryMetadataStore {
    async fn kv_get(
        &self,
        session: &SessionId,
        keys: &[String],
        now: Timestamp,
    ) -> Result<Vec<Option<KvRecord>>> {
        self.with(|state| {
            let s = stored(&mut state.sessions, session)?;
            Ok(keys
                .iter()
                .map(|k| present(s.kv.get(k), now).cloned())
                .collect())
        })
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
        self.with(|state| {
            let s = stored(&mut state.sessions, session)?;
            for w in &writes {
                if let Some(expected) = w.expected_version {
                    let current = present(s.kv.get(&w.key), now).map_or(0, |r| r.version);
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
                let old = s.kv.get(&w.key);
                let last = old.map_or(0, |(r, _)| r.version);
                let created_at = present(old, now).map_or(now, |r| r.created_at);
                let record = KvRecord {
                    version: next_version(last),
                    created_at,
                    updated_at: now,
                    ttl_seconds: w.ttl_seconds,
                    expires_at: w.expires_at,
                    key: w.key,
                    value: w.value,
                };
                s.kv.insert(record.key.clone(), (record.clone(), false));
                events.push(NewEvent {
                    related_id: Some(record.key.clone()),
                    ..event.clone()
                });
                written.push(record);
            }
            append(s, events);
            let idem = idem.map(|i| i.record(&written, &[]));
            remember(state, tenant, session.as_str(), idem);
            Ok(KvWriteOutcome::Written(written))
        })
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
        self.with(|state| {
            let s = stored(&mut state.sessions, session)?;
            let selected: Vec<String> = match &which {
                KvSelection::Keys(keys) => keys.clone(),
                KvSelection::Prefix(p) => {
                    s.kv.range(p.clone()..)
                        .take_while(|(k, _)| k.starts_with(p.as_str()))
                        .map(|(k, _)| k.clone())
                        .collect()
                }
            };
            let mut deleted = Vec::new();
            for key in selected {
                if present(s.kv.get(&key), now).is_some()
                    && let Some((r, gone)) = s.kv.get_mut(&key)
                {
                    r.updated_at = now;
                    *gone = true;
                    deleted.push(key);
                }
            }
            let events = match which {
                KvSelection::Keys(_) => deleted
                    .iter()
                    .map(|k| NewEvent {
                        related_id: Some(k.clone()),
                        ..event.clone()
                    })
                    .collect(),
                KvSelection::Prefix(_) if deleted.is_empty() => Vec::new(),
                KvSelection::Prefix(p) => vec![NewEvent {
                    related_id: Some(p),
                    ..event
                }],
            };
            append(s, events);
            let idem = idem.map(|i| i.record(&[], &deleted));
            remember(state, tenant, session.as_str(), idem);
            Ok(deleted)
        })
    }

    async fn kv_keys(
        &self,
        session: &SessionId,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> Result<(Vec<String>, bool)> {
        self.with(|state| {
            let s = stored(&mut state.sessions, session)?;
            let mut keys =
                s.kv.range(prefix.to_owned()..)
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
                    .filter(|(_, e)| present(Some(e), now).is_some())
                    .map(|(k, _)| k.clone())
                    .take(limit + 1)
                    .collect::<Vec<_>>();
            let more = keys.len() > limit;
            keys.truncate(limit);
            Ok((keys, more))
        })
    }

    async fn kv_stats(&self, session: &SessionId, now: Timestamp) -> Result<(u64, u64)> {
        self.with(|state| {
            let s = stored(&mut state.sessions, session)?;
            Ok(s.kv
                .values()
                .filter_map(|e| present(Some(e), now))
                .fold((0, 0), |(n, b), r| (n + 1, b + r.value.len() as u64)))
        })
    }
}
