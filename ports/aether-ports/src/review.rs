//! Review types (SPEC §4.2): commits, approvals bound to a generation, annotations anchored to
//! a content hash, and review requests.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use aether_domain::Timestamp;

use crate::model::PageRequest;
use crate::serde_helpers as h;

/// A durable record of a session outcome: its tree frozen at `generation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    pub id: String,
    pub session_id: String,
    pub message: String,
    /// Who wrote the change (free text, defaults to the committing principal).
    pub author: String,
    /// The principal that made the commit.
    pub committed_by: String,
    pub generation: u64,
    /// The checkpoint holding the committed tree (restorable like any checkpoint).
    pub checkpoint_id: String,
    /// The granted approval the commit passed its gate with, if the policy gates commits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommitRequest {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
}

/// A gate request on a session; `status` is `PENDING`, `GRANTED`, `DENIED` or `STALE` (a
/// pending or granted approval whose session was written after `generation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    pub id: String,
    pub session_id: String,
    pub reason: String,
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub details: serde_json::Value,
    pub status: String,
    /// The session generation the approval is bound to.
    pub generation: u64,
    pub requested_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub created_at: Timestamp,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "h::opt_timestamp"
    )]
    #[schemars(with = "Option<String>")]
    pub decided_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestApprovalRequest {
    pub reason: String,
    /// Any JSON object the reviewer should see (a summary, links, test results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecideApprovalRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A review note on a session, or on a path (and line) as its content was (`contentHash`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Annotation {
    pub id: String,
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub comment: String,
    #[serde(default)]
    pub labels: Vec<String>,
    /// The file's content hash when the note was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    /// `OPEN` or `RESOLVED`.
    pub status: String,
    pub author: String,
    pub generation: u64,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub created_at: Timestamp,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateAnnotationRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub comment: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// Refuse (409 `ABORTED`) unless the file still has this content hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_content_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateAnnotationRequest {
    /// `OPEN` or `RESOLVED`.
    pub status: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAnnotationsRequest {
    /// Only `OPEN` or only `RESOLVED` annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(flatten)]
    pub page: PageRequest,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestReviewRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}
