//! Request and response types of the session API; their serde form is the JSON of SPEC §4.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use aether_domain::{EntryKind, SessionStatus, Timestamp};

use crate::serde_helpers as h;

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// `pageSize`/`pageToken` of every list route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
}

impl PageRequest {
    /// The effective page size, or an error naming the limit.
    pub fn size(&self) -> crate::Result<usize> {
        match self.page_size {
            None | Some(0) => Ok(DEFAULT_PAGE_SIZE as usize),
            Some(n) if n <= MAX_PAGE_SIZE => Ok(n as usize),
            Some(n) => Err(crate::ApiError::invalid(format!(
                "pageSize {n} exceeds the maximum of {MAX_PAGE_SIZE}"
            ))),
        }
    }
}

/// One page of a list; the HTTP layer names `items` after the route (`sessions`, `entries` …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    pub source_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSessionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<SourceRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty: Option<Empty>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub initial_tags: BTreeMap<String, String>,
    /// Actions gated by approval: `COMMIT`, `PROMOTE`; default both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capabilities {
    pub commit: bool,
    pub approvals: bool,
    pub annotations: bool,
    /// [ours] The largest file this server stores; clients refuse writes past it up front
    /// (`EFBIG` on a mount) rather than learn it when the write-back is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub id: String,
    pub tenant_id: String,
    pub base_fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<SourceRef>,
    #[serde(with = "h::session_status")]
    #[schemars(with = "String")]
    pub status: SessionStatus,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub generation: u64,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub created_at: Timestamp,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub last_activity_at: Timestamp,
    pub capabilities: Capabilities,
    pub approval_policy: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListSessionsRequest {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "h::opt_session_status"
    )]
    pub status: Option<SessionStatus>,
    /// `key:value`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    #[serde(flatten)]
    pub page: PageRequest,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForkSessionRequest {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub initial_tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateCheckpointRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub id: String,
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub generation: u64,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreRequest {
    pub checkpoint_id: String,
    /// Restore only these paths (and what is below them); the whole tree when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

/// One path of a session tree as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub path: String,
    #[serde(with = "h::entry_kind")]
    #[schemars(with = "String")]
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default)]
    pub rdev: u64,
    pub nlink: u32,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub atime: Timestamp,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub mtime: Timestamp,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub ctime: Timestamp,
    pub version: u64,
    /// The file this path names; hard links share it.
    pub inode: u64,
    /// The content-addressed extents holding a file's bytes, when the manifest was asked for
    /// them (`includeCasExtents`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas_extents: Option<Vec<CasExtent>>,
}

/// A run of a file's bytes stored as one CAS blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CasExtent {
    pub offset: u64,
    pub length: u64,
    pub hash: String,
}

impl Entry {
    /// Fills `cas_extents`: a file is one whole-file blob in this storage model.
    pub fn with_cas_extents(mut self) -> Self {
        if self.kind == aether_domain::EntryKind::File {
            self.cas_extents = Some(match &self.content_hash {
                Some(hash) if self.size > 0 => vec![CasExtent {
                    offset: 0,
                    length: self.size,
                    hash: hash.clone(),
                }],
                _ => Vec::new(),
            });
        }
        self
    }
}

impl From<&aether_domain::Entry> for Entry {
    fn from(e: &aether_domain::Entry) -> Self {
        Entry {
            path: e.path.as_str().to_owned(),
            kind: e.kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            size: e.size,
            content_hash: e.content_hash.clone(),
            target: e.target.clone(),
            rdev: e.rdev,
            nlink: e.nlink,
            atime: e.atime,
            mtime: e.mtime,
            ctime: e.ctime,
            version: e.version,
            inode: e.inode,
            cas_extents: None,
        }
    }
}

impl From<aether_domain::Entry> for Entry {
    fn from(e: aether_domain::Entry) -> Self {
        Entry::from(&e)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRequest {
    /// A directory (or file) path; the whole tree when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Default true: everything below `pathPrefix`; false: the entry itself and its direct children.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cas_extents: Option<bool>,
    #[serde(flatten)]
    pub page: PageRequest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub entries: Page<Entry>,
    /// The session generation the listing was read at.
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MkdirRequest {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default)]
    pub parents: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RmdirRequest {
    pub path: String,
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteFileRequest {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenameRequest {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub no_replace: bool,
    #[serde(default)]
    pub exchange: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LinkRequest {
    pub existing_path: String,
    pub new_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathRequest {
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SymlinkRequest {
    pub path: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SymlinkTarget {
    pub target: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum XattrSetMode {
    #[default]
    Either,
    /// Fail if the attribute exists (XATTR_CREATE).
    Create,
    /// Fail if it does not (XATTR_REPLACE).
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetXattrRequest {
    pub path: String,
    pub name: String,
    #[serde(with = "h::base64_bytes")]
    #[schemars(with = "String")]
    pub value: Vec<u8>,
    #[serde(default)]
    pub mode: XattrSetMode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct XattrRequest {
    pub path: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XattrValue {
    #[serde(with = "h::base64_bytes")]
    #[schemars(with = "String")]
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct XattrNames {
    pub names: Vec<String>,
}

/// setattr [ours]: `None` leaves a field alone; size changes go through `patchSegments`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetAttributesRequest {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "h::opt_timestamp"
    )]
    #[schemars(with = "Option<String>")]
    pub atime: Option<Timestamp>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "h::opt_timestamp"
    )]
    #[schemars(with = "Option<String>")]
    pub mtime: Option<Timestamp>,
}

/// mknod [ours]: FIFO, socket and device nodes, stored as metadata only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MknodRequest {
    pub path: String,
    #[serde(with = "h::entry_kind")]
    #[schemars(with = "String")]
    pub kind: EntryKind,
    #[serde(default)]
    pub mode: u32,
    #[serde(default)]
    pub rdev: u64,
}

/// A byte range of a read (HTTP `Range` forms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=start-` or `bytes=start-end` (end inclusive).
    From {
        start: u64,
        end_inclusive: Option<u64>,
    },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Resolves against a size into `[start, end)`, or `None` when unsatisfiable.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            ByteRange::From {
                start,
                end_inclusive,
            } => {
                if start >= size {
                    return None;
                }
                let end = end_inclusive.map_or(size, |e| e.saturating_add(1).min(size));
                (end > start).then_some((start, end))
            }
            ByteRange::Suffix(0) => None,
            ByteRange::Suffix(n) => Some((size.saturating_sub(n), size)).filter(|_| size > 0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFileRequest {
    pub path: String,
    pub range: Option<ByteRange>,
}

/// File bytes with the entry they were read from; `range` is `[start, end)` of a partial read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileContent {
    pub entry: Entry,
    pub data: bytes::Bytes,
    pub range: Option<(u64, u64)>,
}

/// A read whose bytes arrive as the server reads them, so that the start of a large range
/// reaches its reader long before the end does. `chunks` yields exactly the bytes of `range`
/// (or of the whole file) in order; an `Err` ends it.
pub struct FileChunks {
    pub entry: Entry,
    pub range: Option<(u64, u64)>,
    pub chunks: crate::ByteStream,
}

impl FileChunks {
    /// A read already held whole, as a stream of one chunk.
    pub fn whole(c: FileContent) -> Self {
        FileChunks {
            entry: c.entry,
            range: c.range,
            chunks: crate::body::one_chunk(c.data),
        }
    }
}

impl std::fmt::Debug for FileChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileChunks")
            .field("entry", &self.entry)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct WriteFileRequest {
    pub path: String,
    pub data: crate::FileBody,
    pub mode: Option<u32>,
    pub parents: bool,
    pub expected_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Segment {
    pub offset: u64,
    #[serde(with = "h::base64_bytes")]
    #[schemars(with = "String")]
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchSegmentsRequest {
    pub path: String,
    #[serde(default)]
    pub segments: Vec<Segment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_to: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_hash: Option<String>,
    /// Create the file when it does not exist.
    #[serde(default)]
    pub create: bool,
}

/// One operation of an atomic batch [ours].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum BatchOperation {
    Mkdir(MkdirRequest),
    Rmdir(RmdirRequest),
    DeleteFile(DeleteFileRequest),
    Rename(RenameRequest),
    Link(LinkRequest),
    Unlink(PathRequest),
    Symlink(SymlinkRequest),
    SetXattr(SetXattrRequest),
    RemoveXattr(XattrRequest),
    SetAttributes(SetAttributesRequest),
    Mknod(MknodRequest),
    /// Inline content, base64; for small files.
    #[serde(rename_all = "camelCase")]
    WriteFile {
        path: String,
        #[serde(with = "h::base64_bytes")]
        #[schemars(with = "String")]
        data: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        #[serde(default)]
        parents: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expected_hash: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchRequest {
    pub operations: Vec<BatchOperation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResult {
    /// The entry an operation created or changed, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
    pub generation: u64,
}

/// One durable entry of a session's activity log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub sequence: u64,
    pub session_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_path: Option<String>,
    /// The other object an event concerns: the new session of a fork, the origin of a forked
    /// session, the checkpoint created or restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_id: Option<String>,
    pub principal: String,
    pub generation: u64,
    #[serde(with = "h::timestamp")]
    #[schemars(with = "String")]
    pub time: Timestamp,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListEventsRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_sequence: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "h::opt_timestamp"
    )]
    pub since: Option<Timestamp>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "h::opt_timestamp"
    )]
    pub until: Option<Timestamp>,
    /// Event types to keep; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub types: Vec<String>,
    #[serde(flatten)]
    pub page: PageRequest,
}
