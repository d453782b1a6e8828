//! Source types (SPEC §4.2): durable baselines with ordered immutable revisions, filled by
//! asynchronous import jobs and advanced by promoting a session.

use std::collections::BTreeMap;
use std::pin::Pin;

use futures::Stream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use aether_domain::Timestamp;

use crate::model::PageRequest;
use crate::serde_helpers as h;

/// Where a source's content comes from; which fields apply depends on the kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceOrigin {
    /// `SOURCE_KIND_LOCAL_PATH`: a directory on the server's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `SOURCE_KIND_GIT`: a repository URL or a path on the server's disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// `SOURCE_KIND_GIT`: a branch or tag (the default branch when absent).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub reference: Option<String>,
    /// `SOURCE_KIND_GIT_BUNDLE`: a bundle file on the server's disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle_path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub id: String,
    pub tenant_id: String,
    pub display_name: String,
    /// `SOURCE_KIND_LOCAL_PATH`, `SOURCE_KIND_ARCHIVE`, `SOURCE_KIND_GIT`, `SOURCE_KIND_GIT_BUNDLE`.
    pub kind: String,
    pub origin: SourceOrigin,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `UNDERLAY_SOURCE_STATUS_CREATING` until the first revision, then `..._READY`
    /// (`..._FAILED` when the first import failed).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision_id: Option<String>,
    pub revision_count: u64,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub created_at: Timestamp,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSourceRequest {
    pub display_name: String,
    pub kind: String,
    #[serde(default)]
    pub origin: SourceOrigin,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// An immutable tree of a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub id: String,
    pub source_id: String,
    /// 1 for the first revision, then one more each time.
    pub number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_revision_id: Option<String>,
    /// `IMPORT`, `REFRESH` or `PROMOTION`.
    pub made_by: String,
    /// The promoted session, for a promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub file_count: u64,
    pub byte_count: u64,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub created_at: Timestamp,
}

/// An asynchronous source operation and its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub id: String,
    pub source_id: String,
    /// `IMPORT`, `REFRESH` or `PROMOTION`.
    pub kind: String,
    /// `UNDERLAY_IMPORT_JOB_STATE_QUEUED`, `_RUNNING`, `_SUCCEEDED`, `_FAILED`.
    pub state: String,
    /// The principal that started it.
    pub requested_by: String,
    pub bytes_processed: u64,
    pub files_processed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub created_at: Timestamp,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromoteSessionRequest {
    pub session_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListSourcesRequest {
    #[serde(flatten)]
    pub page: PageRequest,
}

/// One thing an importer found, in an order where parents come before children.
#[derive(Debug)]
pub enum ImportItem {
    Dir {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: bytes::Bytes,
    },
    Symlink {
        path: String,
        target: String,
    },
}

/// What an importer yields; an `Err` fails the import.
pub type ImportStream = Pin<Box<dyn Stream<Item = crate::Result<ImportItem>> + Send + 'static>>;

/// What an importer reads from the server's host (the I/O side of imports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOrigin {
    LocalPath(String),
    Git {
        url: String,
        reference: Option<String>,
    },
    GitBundle(String),
}
