//! Knowledge-cache use cases: per-session versioned values with TTLs, compare-and-set, atomic
//! batches, prefix listing and deletion. Writes append events and honour `Idempotency-Key`.

use aether_domain::knowledge::{check_key, check_prefix, expiry};
use aether_domain::{Error, Reason, Result, Scope, SessionStatus, Timestamp};
use aether_ports::plan;
use aether_ports::store::{
    BlobStore, Environment, KnowledgeStore, KvIdempotency, KvRecord, KvSelection, KvWrite,
    KvWriteOutcome, MetadataStore, SessionRecord,
};
use aether_ports::*;

use crate::{Service, replayed_value, reused_key};

fn missing(key: &str) -> Error {
    Error::not_found(format!("cache key {key:?} not found"))
}

/// What a mutation found: a first attempt, or the reply recorded for its idempotency key.
enum Attempt {
    Run(Option<KvIdempotency>),
    Replayed(Outcome),
}

impl<M: MetadataStore + KnowledgeStore, B: BlobStore, E: Environment> Service<M, B, E> {
    /// The session, if the caller may write its cache: in any state but archived.
    async fn cache_writer(&self, ctx: &Ctx, session_id: &str) -> Result<SessionRecord> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        if matches!(
            rec.status,
            SessionStatus::Archived | SessionStatus::Archiving
        ) {
            return Err(Error::precondition(format!(
                "session {session_id} is {}; its knowledge cache is read-only",
                rec.status.as_str()
            ))
            .with_reason(Reason::InvalidState));
        }
        Ok(rec)
    }

    /// A retry of an applied request gets the recorded reply; a first attempt gets the key
    /// under which the store records the reply it is about to produce.
    async fn attempt(&self, ctx: &Ctx, rec: &SessionRecord, reply: KvReply) -> Result<Attempt> {
        if let Some(outcome) = self.replay(ctx, rec.id.as_str()).await? {
            return Ok(Attempt::Replayed(outcome));
        }
        Ok(Attempt::Run(ctx.idempotency_key.clone().map(|key| {
            KvIdempotency {
                key,
                time: self.inner.env.now(),
                reply,
            }
        })))
    }

    /// A validated write; `now` is the instant of the whole call (its expiry counts from it).
    fn write_of(
        &self,
        now: Timestamp,
        key: String,
        value: Vec<u8>,
        ttl: Option<u64>,
    ) -> Result<KvWrite> {
        check_key(&key)?;
        let limit = self.inner.limits.max_cache_value_bytes;
        if value.len() > limit {
            return Err(Error::invalid(format!(
                "value of cache key {key:?} is {} bytes; the limit is {limit}",
                value.len()
            )));
        }
        Ok(KvWrite {
            expires_at: expiry(now, ttl)?,
            ttl_seconds: ttl,
            expected_version: None,
            key,
            value,
        })
    }

    fn check_batch(&self, what: &str, n: usize) -> Result<()> {
        let limit = self.inner.limits.max_cache_batch;
        if n == 0 || n > limit {
            return Err(Error::invalid(format!(
                "{what} names {n} keys; a batch takes 1 to {limit}"
            )));
        }
        Ok(())
    }

    async fn present(&self, rec: &SessionRecord, key: &str) -> Result<Option<KvRecord>> {
        check_key(key)?;
        let got = self
            .inner
            .meta
            .kv_get(&rec.id, &[key.to_owned()], self.inner.env.now())
            .await?;
        Ok(got.into_iter().next().flatten())
    }

    async fn store(
        &self,
        ctx: &Ctx,
        rec: &SessionRecord,
        now: Timestamp,
        writes: Vec<KvWrite>,
        idem: Option<KvIdempotency>,
    ) -> Result<KvWriteOutcome> {
        let mut event = self.event(ctx, "CACHE_SET", rec.generation);
        event.time = now;
        let outcome = self
            .inner
            .meta
            .kv_write(&rec.tenant, &rec.id, writes, now, event, idem)
            .await?;
        if matches!(outcome, KvWriteOutcome::Written(_)) {
            self.notify(&rec.id);
        }
        Ok(outcome)
    }

    async fn remove(
        &self,
        ctx: &Ctx,
        rec: &SessionRecord,
        which: KvSelection,
        idem: Option<KvIdempotency>,
    ) -> Result<Vec<String>> {
        let kind = match which {
            KvSelection::Keys(_) => "CACHE_DELETED",
            KvSelection::Prefix(_) => "CACHE_PREFIX_DELETED",
        };
        let event = self.event(ctx, kind, rec.generation);
        let deleted = self
            .inner
            .meta
            .kv_delete(
                &rec.tenant,
                &rec.id,
                which,
                self.inner.env.now(),
                event,
                idem,
            )
            .await?;
        if !deleted.is_empty() {
            self.notify(&rec.id);
        }
        Ok(deleted)
    }
}

fn written(outcome: KvWriteOutcome) -> Result<Vec<KvRecord>> {
    match outcome {
        KvWriteOutcome::Written(r) => Ok(r),
        KvWriteOutcome::VersionMoved { key, current } => Err(Error::internal(format!(
            "cache key {key:?} moved to version {current} during an unconditional write"
        ))),
    }
}

impl<M: MetadataStore + KnowledgeStore, B: BlobStore, E: Environment> KnowledgeApi
    for Service<M, B, E>
{
    async fn cache_get(&self, ctx: &Ctx, session_id: &str, key: &str) -> Result<CacheEntry> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        self.present(&rec, key)
            .await?
            .map(CacheEntry::of)
            .ok_or_else(|| missing(key))
    }

    async fn cache_put(
        &self,
        ctx: &Ctx,
        session_id: &str,
        key: &str,
        req: PutCacheRequest,
    ) -> Result<CacheMetadata> {
        let rec = self.cache_writer(ctx, session_id).await?;
        let now = self.inner.env.now();
        let write = self.write_of(now, key.to_owned(), req.value, req.ttl_seconds)?;
        let idem = match self.attempt(ctx, &rec, KvReply::Metadata).await? {
            Attempt::Replayed(o) => return replayed_value(o),
            Attempt::Run(idem) => idem,
        };
        let records = written(self.store(ctx, &rec, now, vec![write], idem).await?)?;
        records
            .first()
            .map(CacheMetadata::of)
            .ok_or_else(|| Error::internal("the store wrote nothing"))
    }

    async fn cache_delete(&self, ctx: &Ctx, session_id: &str, key: &str) -> Result<()> {
        let rec = self.cache_writer(ctx, session_id).await?;
        check_key(key)?;
        let idem = match self.attempt(ctx, &rec, KvReply::Done).await? {
            Attempt::Replayed(Outcome::Done) => return Ok(()),
            Attempt::Replayed(_) => return Err(reused_key()),
            Attempt::Run(idem) => idem,
        };
        let deleted = self
            .remove(ctx, &rec, KvSelection::Keys(vec![key.to_owned()]), idem)
            .await?;
        if deleted.is_empty() {
            return Err(missing(key));
        }
        Ok(())
    }

    async fn cache_exists(&self, ctx: &Ctx, session_id: &str, key: &str) -> Result<CacheExists> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        Ok(CacheExists {
            exists: self.present(&rec, key).await?.is_some(),
        })
    }

    async fn cache_metadata(
        &self,
        ctx: &Ctx,
        session_id: &str,
        key: &str,
    ) -> Result<CacheMetadata> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        self.present(&rec, key)
            .await?
            .map(|r| CacheMetadata::of(&r))
            .ok_or_else(|| missing(key))
    }

    async fn cache_compare_and_set(
        &self,
        ctx: &Ctx,
        session_id: &str,
        key: &str,
        req: CompareAndSetRequest,
    ) -> Result<CompareAndSetResponse> {
        let rec = self.cache_writer(ctx, session_id).await?;
        let now = self.inner.env.now();
        let mut write = self.write_of(now, key.to_owned(), req.value, req.ttl_seconds)?;
        write.expected_version = Some(req.expected_version);
        let idem = match self.attempt(ctx, &rec, KvReply::Swapped).await? {
            Attempt::Replayed(o) => return replayed_value(o),
            Attempt::Run(idem) => idem,
        };
        Ok(match self.store(ctx, &rec, now, vec![write], idem).await? {
            KvWriteOutcome::Written(records) => CompareAndSetResponse {
                swapped: true,
                current_version: records.first().map_or(0, |r| r.version),
            },
            KvWriteOutcome::VersionMoved { current: 0, .. } => {
                return Err(Error::not_found(format!(
                    "cache key {key:?} not found (compare-and-set expected version {}; use 0 to create it)",
                    req.expected_version
                )));
            }
            KvWriteOutcome::VersionMoved { current, .. } => CompareAndSetResponse {
                swapped: false,
                current_version: current,
            },
        })
    }

    async fn cache_keys(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ListCacheKeysRequest,
    ) -> Result<Page<String>> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        let prefix = req.prefix.unwrap_or_default();
        check_prefix(&prefix)?;
        let limit = req.page.size()?;
        let after = match &req.page.page_token {
            Some(t) => Some(plan::decode_token("keys", t)?),
            None => None,
        };
        let (items, more) = self
            .inner
            .meta
            .kv_keys(
                &rec.id,
                &prefix,
                after.as_deref(),
                limit,
                self.inner.env.now(),
            )
            .await?;
        let next_page_token = more
            .then(|| items.last().map(|k| plan::encode_token("keys", k)))
            .flatten();
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn cache_stats(&self, ctx: &Ctx, session_id: &str) -> Result<CacheStats> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        let (key_count, total_bytes) = self
            .inner
            .meta
            .kv_stats(&rec.id, self.inner.env.now())
            .await?;
        Ok(CacheStats {
            key_count,
            total_bytes,
        })
    }

    async fn cache_batch_get(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: CacheKeysRequest,
    ) -> Result<BatchGetResponse> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        self.check_batch("batch-get", req.keys.len())?;
        for k in &req.keys {
            check_key(k)?;
        }
        let got = self
            .inner
            .meta
            .kv_get(&rec.id, &req.keys, self.inner.env.now())
            .await?;
        let mut reply = BatchGetResponse {
            entries: Vec::new(),
            missing: Vec::new(),
        };
        for (key, record) in req.keys.into_iter().zip(got) {
            match record {
                Some(r) => reply.entries.push(CacheEntry::of(r)),
                None => reply.missing.push(key),
            }
        }
        Ok(reply)
    }

    async fn cache_batch_set(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: BatchSetRequest,
    ) -> Result<BatchSetResponse> {
        let rec = self.cache_writer(ctx, session_id).await?;
        let now = self.inner.env.now();
        self.check_batch("batch-set", req.entries.len())?;
        let writes = req
            .entries
            .into_iter()
            .map(|w| self.write_of(now, w.key, w.value, w.ttl_seconds))
            .collect::<Result<Vec<_>>>()?;
        let idem = match self.attempt(ctx, &rec, KvReply::Batch).await? {
            Attempt::Replayed(o) => return replayed_value(o),
            Attempt::Run(idem) => idem,
        };
        let records = written(self.store(ctx, &rec, now, writes, idem).await?)?;
        Ok(BatchSetResponse {
            entries: records.iter().map(CacheMetadata::of).collect(),
        })
    }

    async fn cache_batch_delete(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: CacheKeysRequest,
    ) -> Result<DeletedCount> {
        let rec = self.cache_writer(ctx, session_id).await?;
        self.check_batch("batch-delete", req.keys.len())?;
        for k in &req.keys {
            check_key(k)?;
        }
        let idem = match self.attempt(ctx, &rec, KvReply::Count).await? {
            Attempt::Replayed(o) => return replayed_value(o),
            Attempt::Run(idem) => idem,
        };
        let deleted = self
            .remove(ctx, &rec, KvSelection::Keys(req.keys), idem)
            .await?;
        Ok(DeletedCount {
            deleted: deleted.len() as u64,
        })
    }

    async fn cache_delete_by_prefix(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: DeleteByPrefixRequest,
    ) -> Result<DeletedCount> {
        let rec = self.cache_writer(ctx, session_id).await?;
        if req.prefix.is_empty() {
            return Err(Error::invalid(
                "prefix is empty; delete-by-prefix needs at least one byte (it would delete every key)",
            ));
        }
        check_prefix(&req.prefix)?;
        let idem = match self.attempt(ctx, &rec, KvReply::Count).await? {
            Attempt::Replayed(o) => return replayed_value(o),
            Attempt::Run(idem) => idem,
        };
        let deleted = self
            .remove(ctx, &rec, KvSelection::Prefix(req.prefix), idem)
            .await?;
        Ok(DeletedCount {
            deleted: deleted.len() as u64,
        })
    }
}
