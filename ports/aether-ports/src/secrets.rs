//! Secret types (SPEC §4.2): named values stored encrypted, listed by name only.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use aether_domain::Timestamp;

use crate::model::PageRequest;
use crate::serde_helpers as h;

/// A secret's name and where it lives, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretInfo {
    pub name: String,
    /// `session`, `tenant` or `unscoped`.
    pub scope: String,
    pub version: u64,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub updated_at: Timestamp,
}

/// A secret with its value, answered only to a caller who may read it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretValue {
    pub name: String,
    pub scope: String,
    pub version: u64,
    /// The plain value, base64.
    #[serde(with = "h::base64_bytes")]
    #[schemars(with = "String")]
    pub value: Vec<u8>,
}

/// Never prints the value, wherever a secret ends up in a debug line.
impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecretValue {{ name: {:?}, scope: {:?}, version: {}, value: <{} bytes redacted> }}",
            self.name,
            self.scope,
            self.version,
            self.value.len()
        )
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutSecretRequest {
    #[serde(with = "h::base64_bytes")]
    #[schemars(with = "String")]
    pub value: Vec<u8>,
}

impl std::fmt::Debug for PutSecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PutSecretRequest {{ value: <{} bytes redacted> }}",
            self.value.len()
        )
    }
}

/// Which scope a secret route acts on; reads without one look in session, tenant, unscoped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListSecretsRequest {
    #[serde(flatten)]
    pub page: PageRequest,
}
