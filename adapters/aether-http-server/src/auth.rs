//! Bearer-token authentication: dev mode trusts `<tenant-uuid>:<principal>`; static mode looks
//! the SHA-256 of the token up in a table loaded from a tokens file.

use std::collections::HashMap;

use aether_domain::ids::parse_dev_token;
use aether_domain::{Error, Principal, Result, Scope, TenantId};

#[derive(Debug, Clone)]
pub enum AuthMode {
    Dev,
    Static(TokenTable),
}

/// Principals by SHA-256 (hex) of their token; the tokens themselves are never held.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    by_hash: HashMap<String, Principal>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenRow>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRow {
    sha256: String,
    tenant: String,
    principal: String,
    scopes: Vec<String>,
}

impl TokenTable {
    /// Parses a tokens file (TOML: `[[tokens]] sha256, tenant, principal, scopes`); errors name
    /// the entry and field at fault.
    pub fn parse_toml(text: &str) -> Result<Self> {
        let file: TokensFile = toml_from_str(text)?;
        let mut by_hash = HashMap::new();
        for (i, row) in file.tokens.into_iter().enumerate() {
            let at = |what: &str| format!("tokens[{i}].{what}");
            let hash = row.sha256.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::invalid(format!(
                    "{} is not a SHA-256 hex digest",
                    at("sha256")
                )));
            }
            let tenant = TenantId::parse(&row.tenant)
                .map_err(|e| Error::invalid(format!("{}: {}", at("tenant"), e.message)))?;
            if row.principal.is_empty() {
                return Err(Error::invalid(format!("{} is empty", at("principal"))));
            }
            let scopes = row
                .scopes
                .iter()
                .map(|s| {
                    Scope::parse(s)
                        .map_err(|e| Error::invalid(format!("{}: {}", at("scopes"), e.message)))
                })
                .collect::<Result<_>>()?;
            by_hash.insert(
                hash,
                Principal {
                    tenant,
                    name: row.principal,
                    scopes,
                },
            );
        }
        Ok(TokenTable { by_hash })
    }

    pub fn insert(&mut self, token: &str, principal: Principal) {
        self.by_hash.insert(sha256_hex(token), principal);
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

fn toml_from_str(text: &str) -> Result<TokensFile> {
    toml::from_str(text).map_err(|e| Error::invalid(format!("tokens file is not valid: {e}")))
}

pub(crate) fn sha256_hex(token: &str) -> String {
    aether_domain::tree::content_hash(token.as_bytes())
}

impl AuthMode {
    /// Resolves the `Authorization` header into a principal.
    pub(crate) fn authenticate(&self, header: Option<&str>) -> Result<Principal> {
        let header = header.ok_or_else(|| {
            Error::unauthenticated(
                "missing Authorization header; send Authorization: Bearer <token>",
            )
        })?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::unauthenticated("Authorization header is not of the form Bearer <token>")
            })?;
        match self {
            AuthMode::Dev => {
                let (tenant, name) = parse_dev_token(token)?;
                Ok(Principal::full_access(tenant, name))
            }
            AuthMode::Static(table) => table
                .by_hash
                .get(&sha256_hex(token))
                .cloned()
                .ok_or_else(|| Error::unauthenticated("token is not known to this server")),
        }
    }
}
