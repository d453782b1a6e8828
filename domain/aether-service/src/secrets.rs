//! Secret use cases: values sealed before they are stored, visible to a session by scope
//! (`session`, its `tenant`, or `unscoped` for the whole deployment), listed by name only.
//! Values never reach events, errors or logs.

use aether_domain::{Error, Result, Scope};
use aether_ports::store::{
    BlobStore, Environment, MetadataStore, SecretHome, SecretRecord, SecretStore, SessionRecord,
};
use aether_ports::*;

use crate::Service;

/// Largest secret value.
const MAX_VALUE_BYTES: usize = 64 * 1024;
const SCOPES: [&str; 3] = ["session", "tenant", "unscoped"];

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "secret name {name:?} must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', '-'"
        )))
    }
}

fn parse_scope(raw: &Option<String>) -> Result<Option<&'static str>> {
    match raw.as_deref() {
        None => Ok(None),
        Some(s) => SCOPES
            .into_iter()
            .find(|k| *k == s)
            .map(Some)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "secret scope {s:?} is not one of session, tenant, unscoped"
                ))
            }),
    }
}

fn home(rec: &SessionRecord, scope: &str) -> SecretHome {
    match scope {
        "session" => (rec.tenant.as_str().to_owned(), rec.id.as_str().to_owned()),
        "tenant" => (rec.tenant.as_str().to_owned(), "tenant".to_owned()),
        _ => ("*".to_owned(), "unscoped".to_owned()),
    }
}

fn scope_name(scope_key: &str) -> &'static str {
    match scope_key {
        "tenant" => "tenant",
        "unscoped" => "unscoped",
        _ => "session",
    }
}

/// What binds a sealed value to its place: moving it to another name or scope breaks it.
fn context(home: &SecretHome, name: &str) -> Vec<u8> {
    format!("{}\0{}\0{name}", home.0, home.1).into_bytes()
}

fn info(r: &SecretRecord) -> SecretInfo {
    SecretInfo {
        name: r.name.clone(),
        scope: scope_name(&r.scope_key).to_owned(),
        version: r.version,
        updated_at: r.updated_at,
    }
}

fn missing(name: &str) -> Error {
    Error::not_found(format!("secret {name:?} not found"))
}

impl<M: MetadataStore + SecretStore, B: BlobStore, E: Environment> Service<M, B, E> {
    fn sealer(&self) -> Result<&dyn aether_ports::store::SecretSealer> {
        self.inner.sealer.as_deref().ok_or_else(|| {
            Error::precondition("this server has no secrets key configured (secrets_key_file)")
        })
    }

    /// Who may change secrets of a scope.
    fn require_writer(ctx: &Ctx, scope: &str) -> Result<()> {
        ctx.principal.require(match scope {
            "session" => Scope::SessionWrite,
            "tenant" => Scope::TenantAdmin,
            _ => Scope::ClusterAdmin,
        })
    }

    async fn secret_event(
        &self,
        ctx: &Ctx,
        rec: &SessionRecord,
        kind: &str,
        scope: &str,
        name: &str,
    ) -> Result<()> {
        let mut event = self.event(ctx, kind, rec.generation);
        event.related_id = Some(format!("{scope}/{name}"));
        self.inner.meta.append_event(&rec.id, event).await?;
        self.notify(&rec.id);
        Ok(())
    }
}

impl<M: MetadataStore + SecretStore, B: BlobStore, E: Environment> SecretsApi for Service<M, B, E> {
    async fn list_secrets(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ListSecretsRequest,
    ) -> Result<Page<SecretInfo>> {
        let rec = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        let limit = req.page.size()?;
        let after = req
            .page
            .page_token
            .as_ref()
            .map(|t| aether_ports::plan::decode_token("secrets", t))
            .transpose()?;
        let homes: Vec<SecretHome> = SCOPES.iter().map(|s| home(&rec, s)).collect();
        let mut items: Vec<SecretInfo> = self
            .inner
            .meta
            .secrets(&homes)
            .await?
            .iter()
            .map(info)
            .filter(|i| {
                after
                    .as_deref()
                    .is_none_or(|a| format!("{}/{}", i.name, i.scope).as_str() > a)
            })
            .take(limit + 1)
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        let next_page_token = more
            .then(|| {
                items.last().map(|i| {
                    aether_ports::plan::encode_token("secrets", &format!("{}/{}", i.name, i.scope))
                })
            })
            .flatten();
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn get_secret(
        &self,
        ctx: &Ctx,
        session_id: &str,
        name: &str,
        scope: SecretScope,
    ) -> Result<SecretValue> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        check_name(name)?;
        let wanted = parse_scope(&scope.scope)?;
        let order: Vec<&str> = match wanted {
            Some(s) => vec![s],
            None => SCOPES.to_vec(),
        };
        let sealer = self.sealer()?;
        for s in order {
            let h = home(&rec, s);
            if let Some(r) = self.inner.meta.secret(&h, name).await? {
                let value = sealer.open(&r.sealed, &context(&h, name))?;
                return Ok(SecretValue {
                    name: r.name,
                    scope: s.to_owned(),
                    version: r.version,
                    value,
                });
            }
        }
        Err(missing(name))
    }

    async fn put_secret(
        &self,
        ctx: &Ctx,
        session_id: &str,
        name: &str,
        scope: SecretScope,
        req: PutSecretRequest,
    ) -> Result<SecretInfo> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        check_name(name)?;
        let s = parse_scope(&scope.scope)?.unwrap_or("session");
        Self::require_writer(ctx, s)?;
        if req.value.len() > MAX_VALUE_BYTES {
            return Err(Error::invalid(format!(
                "secret {name:?} is {} bytes; the limit is {MAX_VALUE_BYTES}",
                req.value.len()
            )));
        }
        let h = home(&rec, s);
        let sealed = self.sealer()?.seal(&req.value, &context(&h, name))?;
        let stored = self
            .inner
            .meta
            .put_secret(&h, name, sealed, self.inner.env.now())
            .await?;
        self.secret_event(ctx, &rec, "SECRET_SET", s, name).await?;
        Ok(info(&stored))
    }

    async fn delete_secret(
        &self,
        ctx: &Ctx,
        session_id: &str,
        name: &str,
        scope: SecretScope,
    ) -> Result<()> {
        let rec = self.authorize(ctx, Scope::SessionWrite, session_id).await?;
        check_name(name)?;
        let s = parse_scope(&scope.scope)?.unwrap_or("session");
        Self::require_writer(ctx, s)?;
        if !self.inner.meta.delete_secret(&home(&rec, s), name).await? {
            return Err(missing(name));
        }
        self.secret_event(ctx, &rec, "SECRET_DELETED", s, name)
            .await
    }
}
