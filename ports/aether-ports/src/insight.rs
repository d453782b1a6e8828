//! Health, analytics, usage and CAS metrics types (SPEC §4.2).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use aether_domain::Timestamp;

use crate::serde_helpers as h;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    pub name: String,
    /// `STATUS_UNKNOWN`, `STATUS_PASSING` or `STATUS_FAILING`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestResults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub reported_at: Timestamp,
}

/// A session's health as its workers last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionHealth {
    pub session_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub checks: Vec<HealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_results: Option<TestResults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_by: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "h::opt_timestamp"
    )]
    #[schemars(with = "Option<String>")]
    pub reported_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportHealthRequest {
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<HealthCheck>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestResultsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    pub passed: u64,
    pub failed: u64,
    #[serde(default)]
    pub skipped: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// What happened in a session, from its counters and its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAnalytics {
    pub session_id: String,
    /// Committed mutations (one per write request or batch).
    pub writes: u64,
    /// Bytes of file content those mutations wrote.
    pub bytes_written: u64,
    /// Bytes of file content read from the session.
    pub bytes_read: u64,
    pub checkpoints: u64,
    pub restores: u64,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "h::opt_timestamp"
    )]
    #[schemars(with = "Option<String>")]
    pub first_write_at: Option<Timestamp>,
    /// From the session's creation to its first write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_first_write_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageRequest {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// A tenant's use over a window (`since` default: 30 days before `until`; `until`: now).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub tenant_id: String,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub since: Timestamp,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub until: Timestamp,
    /// Existing sessions' lifetimes within the window, in hours.
    pub session_hours: f64,
    pub sessions: u64,
    /// Bytes of file content the tenant's sessions hold now (shared layers counted once).
    pub stored_bytes: u64,
    /// Bytes of file content served to readers (all time; the window bounds sessions only).
    pub egress_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CasMetrics {
    pub blob_count: u64,
    pub blob_bytes: u64,
    /// Blobs some entry references (the rest await collection).
    pub referenced_blobs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefcountBucket {
    pub refs: u64,
    pub blobs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CasRefcounts {
    /// How many blobs have each reference count, ascending.
    pub buckets: Vec<RefcountBucket>,
}
