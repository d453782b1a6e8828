//! The knowledge cache's request and response types (SPEC §4.2): a per-session key/value store
//! of bytes with versions, TTLs, compare-and-set and atomic batches.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use aether_domain::Timestamp;

use crate::model::PageRequest;
use crate::serde_helpers as h;

/// A key with its value, as `GET .../cache/{key}` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    pub key: String,
    #[serde(with = "h::base64_bytes")]
    #[schemars(with = "String")]
    pub value: Vec<u8>,
    /// Starts at 1 and grows by one with every successful write of the key, across deletes
    /// and expiry, so a compare-and-set never mistakes a re-created key for the old one.
    pub version: u64,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub updated_at: Timestamp,
}

/// A key's attributes without its value (`.../metadata`, and the answer to writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheMetadata {
    pub key: String,
    pub size: u64,
    pub version: u64,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub created_at: Timestamp,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub updated_at: Timestamp,
    /// The TTL the last write set, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "h::opt_timestamp"
    )]
    #[schemars(with = "Option<String>")]
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutCacheRequest {
    #[serde(with = "h::base64_bytes")]
    #[schemars(with = "String")]
    pub value: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheExists {
    pub exists: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompareAndSetRequest {
    /// The version the key must have now; 0 means it must not exist.
    pub expected_version: u64,
    #[serde(with = "h::base64_bytes")]
    #[schemars(with = "String")]
    pub value: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompareAndSetResponse {
    pub swapped: bool,
    /// The key's version after the call (0 when it does not exist).
    pub current_version: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListCacheKeysRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(flatten)]
    pub page: PageRequest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    pub key_count: u64,
    /// Bytes of the values held (keys not counted).
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheKeysRequest {
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchGetResponse {
    /// The keys that exist, in the order asked.
    pub entries: Vec<CacheEntry>,
    /// The keys that do not.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheWrite {
    pub key: String,
    #[serde(with = "h::base64_bytes")]
    #[schemars(with = "String")]
    pub value: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchSetRequest {
    pub entries: Vec<CacheWrite>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSetResponse {
    /// What each write produced, in request order.
    pub entries: Vec<CacheMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteByPrefixRequest {
    pub prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletedCount {
    pub deleted: u64,
}

impl CacheEntry {
    pub fn of(r: crate::store::KvRecord) -> Self {
        CacheEntry {
            key: r.key,
            value: r.value,
            version: r.version,
            updated_at: r.updated_at,
        }
    }
}

impl CacheMetadata {
    pub fn of(r: &crate::store::KvRecord) -> Self {
        CacheMetadata {
            key: r.key.clone(),
            size: r.value.len() as u64,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            ttl_seconds: r.ttl_seconds,
            expires_at: r.expires_at,
        }
    }
}

/// Which reply a knowledge-cache mutation gives, so that the store can remember it under the
/// request's idempotency key in the same transaction (the versions it assigns are in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvReply {
    /// `cache_put`: the written key's metadata.
    Metadata,
    /// `cache_compare_and_set` that swapped.
    Swapped,
    /// `cache_batch_set`.
    Batch,
    /// `cache_delete`: no body.
    Done,
    /// `cache_batch_delete`, `cache_delete_by_prefix`.
    Count,
}

impl KvReply {
    pub fn outcome(self, written: &[crate::store::KvRecord], deleted: &[String]) -> crate::Outcome {
        let value = match self {
            KvReply::Done => return crate::Outcome::Done,
            KvReply::Metadata => written
                .first()
                .map(|r| serde_json::to_value(CacheMetadata::of(r))),
            KvReply::Swapped => written.first().map(|r| {
                serde_json::to_value(CompareAndSetResponse {
                    swapped: true,
                    current_version: r.version,
                })
            }),
            KvReply::Batch => Some(serde_json::to_value(BatchSetResponse {
                entries: written.iter().map(CacheMetadata::of).collect(),
            })),
            KvReply::Count => Some(serde_json::to_value(DeletedCount {
                deleted: deleted.len() as u64,
            })),
        };
        match value {
            Some(Ok(v)) => crate::Outcome::Value(v),
            _ => crate::Outcome::Done,
        }
    }
}
