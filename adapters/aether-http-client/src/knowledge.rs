//! `KnowledgeApi` over HTTP: the `/v1/sessions/{id}/cache/...` routes.

use reqwest::Method;

use aether_ports::*;

use crate::{HttpClient, page_of, page_query, seg};

/// Route names that sit beside `{key}` under `.../cache/`; a key spelled like one of them is
/// sent with its first byte percent-encoded so that it reaches the key routes.
const RESERVED: &[&str] = &[
    "keys",
    "stats",
    "batch-get",
    "batch-set",
    "batch-delete",
    "delete-by-prefix",
];

/// The route of `key`; a key no route can carry (empty) is refused here with the server's words.
fn key_path(id: &str, key: &str, rest: &str) -> Result<String> {
    if key.is_empty() {
        aether_domain::knowledge::check_key(key)?;
    }
    let encoded = if RESERVED.contains(&key) {
        let first = key.as_bytes()[0];
        format!("%{first:02X}{}", seg(&key[1..]))
    } else {
        seg(key)
    };
    Ok(HttpClient::session_path(
        id,
        &format!("/cache/{encoded}{rest}"),
    ))
}

impl KnowledgeApi for HttpClient {
    async fn cache_get(&self, ctx: &Ctx, id: &str, key: &str) -> Result<CacheEntry> {
        self.get(ctx, &key_path(id, key, "")?, &[]).await
    }

    async fn cache_put(
        &self,
        ctx: &Ctx,
        id: &str,
        key: &str,
        req: PutCacheRequest,
    ) -> Result<CacheMetadata> {
        let rb = self
            .request(ctx, Method::PUT, &key_path(id, key, "")?)?
            .json(&req);
        self.json(rb).await
    }

    async fn cache_delete(&self, ctx: &Ctx, id: &str, key: &str) -> Result<()> {
        self.send(self.request(ctx, Method::DELETE, &key_path(id, key, "")?)?)
            .await
            .map(drop)
    }

    async fn cache_exists(&self, ctx: &Ctx, id: &str, key: &str) -> Result<CacheExists> {
        self.get(ctx, &key_path(id, key, "/exists")?, &[]).await
    }

    async fn cache_metadata(&self, ctx: &Ctx, id: &str, key: &str) -> Result<CacheMetadata> {
        self.get(ctx, &key_path(id, key, "/metadata")?, &[]).await
    }

    async fn cache_compare_and_set(
        &self,
        ctx: &Ctx,
        id: &str,
        key: &str,
        req: CompareAndSetRequest,
    ) -> Result<CompareAndSetResponse> {
        self.post(ctx, &key_path(id, key, "/compare-and-set")?, &req)
            .await
    }

    async fn cache_keys(
        &self,
        ctx: &Ctx,
        id: &str,
        req: ListCacheKeysRequest,
    ) -> Result<Page<String>> {
        let mut q = Vec::new();
        if let Some(p) = req.prefix {
            q.push(("prefix", p));
        }
        page_query(&req.page, &mut q);
        page_of(
            self.get(ctx, &Self::session_path(id, "/cache/keys"), &q)
                .await?,
            "keys",
        )
    }

    async fn cache_stats(&self, ctx: &Ctx, id: &str) -> Result<CacheStats> {
        self.get(ctx, &Self::session_path(id, "/cache/stats"), &[])
            .await
    }

    async fn cache_batch_get(
        &self,
        ctx: &Ctx,
        id: &str,
        req: CacheKeysRequest,
    ) -> Result<BatchGetResponse> {
        self.post(ctx, &Self::session_path(id, "/cache/batch-get"), &req)
            .await
    }

    async fn cache_batch_set(
        &self,
        ctx: &Ctx,
        id: &str,
        req: BatchSetRequest,
    ) -> Result<BatchSetResponse> {
        self.post(ctx, &Self::session_path(id, "/cache/batch-set"), &req)
            .await
    }

    async fn cache_batch_delete(
        &self,
        ctx: &Ctx,
        id: &str,
        req: CacheKeysRequest,
    ) -> Result<DeletedCount> {
        self.post(ctx, &Self::session_path(id, "/cache/batch-delete"), &req)
            .await
    }

    async fn cache_delete_by_prefix(
        &self,
        ctx: &Ctx,
        id: &str,
        req: DeleteByPrefixRequest,
    ) -> Result<DeletedCount> {
        self.post(
            ctx,
            &Self::session_path(id, "/cache/delete-by-prefix"),
            &req,
        )
        .await
    }
}
