//! `SecretsApi` over HTTP.

use reqwest::Method;

use aether_ports::*;

use crate::{HttpClient, page_of, page_query, seg};

fn secret_path(id: &str, name: &str) -> String {
    HttpClient::session_path(id, &format!("/secrets/{}", seg(name)))
}

fn scope_query(scope: &SecretScope) -> Vec<(&'static str, String)> {
    scope
        .scope
        .as_ref()
        .map(|s| vec![("scope", s.clone())])
        .unwrap_or_default()
}

impl SecretsApi for HttpClient {
    async fn list_secrets(
        &self,
        ctx: &Ctx,
        id: &str,
        req: ListSecretsRequest,
    ) -> Result<Page<SecretInfo>> {
        let mut q = Vec::new();
        page_query(&req.page, &mut q);
        page_of(
            self.get(ctx, &Self::session_path(id, "/secrets"), &q)
                .await?,
            "secrets",
        )
    }

    async fn get_secret(
        &self,
        ctx: &Ctx,
        id: &str,
        name: &str,
        scope: SecretScope,
    ) -> Result<SecretValue> {
        self.get(ctx, &secret_path(id, name), &scope_query(&scope))
            .await
    }

    async fn put_secret(
        &self,
        ctx: &Ctx,
        id: &str,
        name: &str,
        scope: SecretScope,
        req: PutSecretRequest,
    ) -> Result<SecretInfo> {
        let rb = self
            .request(ctx, Method::PUT, &secret_path(id, name))?
            .query(&scope_query(&scope))
            .json(&req);
        self.json(rb).await
    }

    async fn delete_secret(
        &self,
        ctx: &Ctx,
        id: &str,
        name: &str,
        scope: SecretScope,
    ) -> Result<()> {
        let rb = self
            .request(ctx, Method::DELETE, &secret_path(id, name))?
            .query(&scope_query(&scope));
        self.send(rb).await.map(drop)
    }
}
