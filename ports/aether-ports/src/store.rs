//! Ports the service core is generic over: metadata store, content-addressed blob store, and the
//! environment (clock and id randomness). Adapters implement them with one technology each.

use std::collections::BTreeMap;
use std::future::Future;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use aether_domain::splice::{Piece, Splice};
use aether_domain::tree::Change;
use aether_domain::{
    Action, CheckpointId, Entry, SessionId, SessionPath, SessionStatus, TenantId, Timestamp,
};

use crate::Result;
use crate::model::{BatchResponse, Checkpoint, Event, Session, SourceRef};

/// A session as stored, with the fields the API derives its view from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub tenant: TenantId,
    pub base_fingerprint: String,
    pub source_ref: Option<SourceRef>,
    pub status: SessionStatus,
    pub tags: BTreeMap<String, String>,
    pub generation: u64,
    pub created_at: Timestamp,
    pub last_activity_at: Timestamp,
    pub approval_policy: Vec<Action>,
}

/// An event to append; the store assigns the sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: String,
    pub path: Option<String>,
    pub to_path: Option<String>,
    pub related_id: Option<String>,
    pub principal: String,
    pub generation: u64,
    pub time: Timestamp,
}

/// A successful outcome remembered under an idempotency key and replayed on retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value")]
pub enum Outcome {
    Done,
    Entry(crate::model::Entry),
    Session(Session),
    Checkpoint(Checkpoint),
    Batch(BatchResponse),
    /// The reply of a workflow route (knowledge cache, review, sources), as its JSON.
    Value(serde_json::Value),
}

/// Remembers an outcome in the same transaction as the change it describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub key: String,
    pub outcome: Outcome,
    pub time: Timestamp,
}

/// Which tree to read: a session's live tree or one of its checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeRef {
    Session {
        tenant: TenantId,
        session: SessionId,
    },
    Checkpoint {
        tenant: TenantId,
        session: SessionId,
        checkpoint: CheckpointId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub dir: SessionPath,
    /// Everything below `dir`, or only its direct children.
    pub recursive: bool,
    /// Continue strictly after this path.
    pub after: Option<SessionPath>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    pub status: Option<SessionStatus>,
    pub tag: Option<(String, String)>,
    pub source_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub after_sequence: u64,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub types: Vec<String>,
    pub limit: usize,
}

/// An atomic change of a session tree, accepted only if the session is still at
/// `expected_generation`; on success the session is at `generation`. One commit may carry
/// several callers' mutations (the service combines queued writes), each its own generation:
/// `generation - expected_generation` of them, and one idempotency record per keyed caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeCommit {
    pub tenant: TenantId,
    pub session: SessionId,
    pub expected_generation: u64,
    pub generation: u64,
    pub changes: Vec<Change>,
    pub events: Vec<NewEvent>,
    pub idempotency: Vec<IdempotencyRecord>,
    pub time: Timestamp,
    /// Bytes of file content this change writes (for analytics).
    pub bytes_written: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed {
        generation: u64,
    },
    /// Someone else committed first; re-plan against the new state.
    GenerationMoved {
        current: u64,
    },
    /// The commit's idempotency key is recorded already: another copy of the same request
    /// committed first (a client retry that overtook a slow original). Nothing was applied.
    KeyRecorded,
}

/// Sessions, trees (layered copy-on-write), checkpoints, events and idempotency records.
pub trait MetadataStore: Send + Sync + 'static {
    fn insert_session(
        &self,
        rec: &SessionRecord,
        root: &Entry,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> impl Future<Output = Result<Option<SessionRecord>>> + Send;
    fn list_sessions(
        &self,
        tenant: &TenantId,
        filter: &SessionFilter,
        after: Option<&SessionId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SessionRecord>>> + Send;
    /// Deletes the session with its checkpoints, events and idempotency records; false if absent.
    fn delete_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Changes status only if it is still `from`; false when it moved meanwhile.
    fn set_status(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        from: SessionStatus,
        to: SessionStatus,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Creates `fork` sharing `origin`'s tree as it is now, in O(1) of the tree size.
    fn fork_session(
        &self,
        origin: &SessionRecord,
        fork: &SessionRecord,
        origin_event: NewEvent,
        fork_event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn create_checkpoint(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        checkpoint: &Checkpoint,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn checkpoint(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        id: &CheckpointId,
    ) -> impl Future<Output = Result<Option<Checkpoint>>> + Send;
    fn list_checkpoints(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        after: Option<&CheckpointId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Checkpoint>>> + Send;
    /// Replaces the whole tree with the checkpoint's, as one new generation.
    fn restore_tree(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        checkpoint: &CheckpointId,
        expected_generation: u64,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> impl Future<Output = Result<CommitOutcome>> + Send;
    fn entry(
        &self,
        tree: &TreeRef,
        path: &SessionPath,
    ) -> impl Future<Output = Result<Option<Entry>>> + Send;
    /// Every path of `tree` whose entry is the file `inode`, sorted by path.
    fn by_inode(
        &self,
        tree: &TreeRef,
        inode: u64,
    ) -> impl Future<Output = Result<Vec<Entry>>> + Send;
    /// Entries of `query`, sorted by path, and whether more follow.
    fn list(
        &self,
        tree: &TreeRef,
        query: &ListQuery,
    ) -> impl Future<Output = Result<(Vec<Entry>, bool)>> + Send;
    fn commit(&self, commit: TreeCommit) -> impl Future<Output = Result<CommitOutcome>> + Send;
    fn idempotent_outcome(
        &self,
        tenant: &TenantId,
        session: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Outcome>>> + Send;
    fn events(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        query: &EventQuery,
    ) -> impl Future<Output = Result<Vec<Event>>> + Send;
    /// Which of `hashes` some entry still references.
    fn referenced_blobs(
        &self,
        hashes: &[String],
    ) -> impl Future<Output = Result<std::collections::HashSet<String>>> + Send;
    /// Drops the reference-count rows of blobs that were collected.
    fn forget_blobs(&self, hashes: &[String]) -> impl Future<Output = Result<()>> + Send;
    /// Liveness of the backing database, for `/readyz`.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
    /// Appends one event to a session's log (for actions that change no tree or status).
    fn append_event(
        &self,
        session: &SessionId,
        event: NewEvent,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// A knowledge-cache record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvRecord {
    pub key: String,
    pub value: Vec<u8>,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub ttl_seconds: Option<u64>,
    pub expires_at: Option<Timestamp>,
}

/// One value to store. With `expected_version`, the whole write applies only if the key's
/// present version (0 when absent, deleted or expired) equals it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    pub key: String,
    pub value: Vec<u8>,
    pub ttl_seconds: Option<u64>,
    pub expires_at: Option<Timestamp>,
    pub expected_version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWriteOutcome {
    /// Every write applied; the records as they now are, in order.
    Written(Vec<KvRecord>),
    /// A compare-and-set found another version; nothing applied.
    VersionMoved { key: String, current: u64 },
}

/// Which keys a deletion removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvSelection {
    Keys(Vec<String>),
    Prefix(String),
}

/// An idempotency key of a knowledge-cache mutation; the store records `reply` under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvIdempotency {
    pub key: String,
    pub time: Timestamp,
    pub reply: crate::knowledge::KvReply,
}

impl KvIdempotency {
    pub fn record(&self, written: &[KvRecord], deleted: &[String]) -> IdempotencyRecord {
        IdempotencyRecord {
            key: self.key.clone(),
            outcome: self.reply.outcome(written, deleted),
            time: self.time,
        }
    }
}

/// The knowledge cache's storage. Records whose expiry passed read as absent; deleted and
/// expired keys keep their last version so that versions never repeat.
pub trait KnowledgeStore: Send + Sync + 'static {
    /// The present records of `keys`, in order (`None` for absent ones).
    fn kv_get(
        &self,
        session: &SessionId,
        keys: &[String],
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<Option<KvRecord>>>> + Send;
    /// Applies all `writes` atomically, appending one `event` (a template; `related_id` set
    /// to the key) per write, and recording `idem`'s reply with them.
    fn kv_write(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        writes: Vec<KvWrite>,
        now: Timestamp,
        event: NewEvent,
        idem: Option<KvIdempotency>,
    ) -> impl Future<Output = Result<KvWriteOutcome>> + Send;
    /// Deletes the present keys selected; returns them. Appends `event` per deleted key
    /// (`Keys`) or once with the prefix as `related_id` (`Prefix`, if anything was deleted).
    fn kv_delete(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        which: KvSelection,
        now: Timestamp,
        event: NewEvent,
        idem: Option<KvIdempotency>,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Present keys starting with `prefix`, sorted, strictly after `after`; and whether more follow.
    fn kv_keys(
        &self,
        session: &SessionId,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        now: Timestamp,
    ) -> impl Future<Output = Result<(Vec<String>, bool)>> + Send;
    /// (number of present keys, bytes of their values).
    fn kv_stats(
        &self,
        session: &SessionId,
        now: Timestamp,
    ) -> impl Future<Output = Result<(u64, u64)>> + Send;
}

/// A session status change made in the same transaction as a review record: from `.0` to `.1`.
pub type StatusChange = Option<(SessionStatus, SessionStatus)>;

/// Review records (approvals, commits, annotations), each written with its event, an optional
/// session status change and the idempotency record in one transaction.
pub trait ReviewStore: Send + Sync + 'static {
    /// Inserts `approval`; false (and nothing written) if `status` no longer matches.
    fn insert_approval(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        approval: &crate::review::Approval,
        status: StatusChange,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn approval(
        &self,
        session: &SessionId,
        id: &str,
    ) -> impl Future<Output = Result<Option<crate::review::Approval>>> + Send;
    /// Approvals by id, strictly after `after`.
    fn list_approvals(
        &self,
        session: &SessionId,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::review::Approval>>> + Send;
    /// Stores `decided` (status, decider, comment, time) if the approval is still PENDING and
    /// the session still at its `generation`; false (nothing written) otherwise.
    fn decide_approval(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        decided: &crate::review::Approval,
        status: StatusChange,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> impl Future<Output = Result<bool>> + Send;
    fn insert_commit(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        commit: &crate::review::Commit,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn list_commits(
        &self,
        session: &SessionId,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::review::Commit>>> + Send;
    /// Inserts or replaces (same id) an annotation.
    fn put_annotation(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        annotation: &crate::review::Annotation,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn annotation(
        &self,
        session: &SessionId,
        id: &str,
    ) -> impl Future<Output = Result<Option<crate::review::Annotation>>> + Send;
    /// Annotations by id, strictly after `after`, only of `status` if given.
    fn list_annotations(
        &self,
        session: &SessionId,
        status: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::review::Annotation>>> + Send;
}

/// Session ids of source holders start with this; no minted session id can (suffixes are
/// hex), so stores leave them out of session listings and the API refuses them.
pub const HOLDER_PREFIX: &str = "sess_src";

pub fn is_holder(session_id: &str) -> bool {
    session_id.starts_with(HOLDER_PREFIX)
}

/// A source as stored: the API object and the hidden session whose tree its imports and
/// promotions build (its checkpoints are the revisions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub source: crate::sources::Source,
    pub holder: SessionId,
}

/// A revision and the checkpoint of the holder session that keeps its tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRecord {
    pub revision: crate::sources::Revision,
    pub checkpoint: CheckpointId,
}

/// Sources, revisions and jobs, and sessions that start from a revision.
pub trait SourceStore: Send + Sync + 'static {
    /// Inserts the source with its holder session (empty tree) in one transaction.
    fn insert_source(
        &self,
        record: &SourceRecord,
        holder: &SessionRecord,
        root: &Entry,
    ) -> impl Future<Output = Result<()>> + Send;
    fn source(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> impl Future<Output = Result<Option<SourceRecord>>> + Send;
    fn list_sources(
        &self,
        tenant: &TenantId,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SourceRecord>>> + Send;
    /// Replaces the stored source object (status, latest revision, times).
    fn put_source(
        &self,
        tenant: &TenantId,
        source: &crate::sources::Source,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Records a revision and the source as it now is, in one transaction.
    fn insert_revision(
        &self,
        tenant: &TenantId,
        revision: &RevisionRecord,
        source: &crate::sources::Source,
    ) -> impl Future<Output = Result<()>> + Send;
    fn revision(
        &self,
        tenant: &TenantId,
        source_id: &str,
        revision_id: &str,
    ) -> impl Future<Output = Result<Option<RevisionRecord>>> + Send;
    /// Inserts or replaces a job.
    fn put_job(
        &self,
        tenant: &TenantId,
        job: &crate::sources::Job,
    ) -> impl Future<Output = Result<()>> + Send;
    fn job(
        &self,
        tenant: &TenantId,
        source_id: &str,
        job_id: &str,
    ) -> impl Future<Output = Result<Option<crate::sources::Job>>> + Send;
    /// Creates `session` over the tree of checkpoint `at` of `holder`, in O(1) of its size.
    fn insert_session_at(
        &self,
        holder: &SessionId,
        at: &CheckpointId,
        session: &SessionRecord,
        event: NewEvent,
        idem: Option<IdempotencyRecord>,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Retained bus messages of each session, oldest dropped past the retention bound.
pub trait BusStore: Send + Sync + 'static {
    /// Appends `message` (its `sequence` is assigned here) and drops the session's messages
    /// older than the last `retention`; returns the message as stored.
    fn bus_append(
        &self,
        session: &SessionId,
        message: crate::bus::BusMessage,
        retention: usize,
    ) -> impl Future<Output = Result<crate::bus::BusMessage>> + Send;
    /// The session's retained messages, oldest first.
    fn bus_retained(
        &self,
        session: &SessionId,
    ) -> impl Future<Output = Result<Vec<crate::bus::BusMessage>>> + Send;
}

/// A secret as stored: its value sealed by a `SecretSealer`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRecord {
    /// A session id, `tenant`, or `unscoped` (then `tenant` is `*`).
    pub scope_key: String,
    pub name: String,
    pub sealed: Vec<u8>,
    pub version: u64,
    pub updated_at: Timestamp,
}

/// Where a secret is stored: (tenant or `*`, scope key).
pub type SecretHome = (String, String);

/// Encrypted secrets by (tenant, scope key, name).
pub trait SecretStore: Send + Sync + 'static {
    /// Stores `sealed`, one version above the last one of that name; returns the record.
    fn put_secret(
        &self,
        home: &SecretHome,
        name: &str,
        sealed: Vec<u8>,
        now: Timestamp,
    ) -> impl Future<Output = Result<SecretRecord>> + Send;
    fn secret(
        &self,
        home: &SecretHome,
        name: &str,
    ) -> impl Future<Output = Result<Option<SecretRecord>>> + Send;
    /// Records of every home in `homes`, sorted by name then by the order of `homes`.
    fn secrets(
        &self,
        homes: &[SecretHome],
    ) -> impl Future<Output = Result<Vec<SecretRecord>>> + Send;
    /// false when there was no such secret.
    fn delete_secret(
        &self,
        home: &SecretHome,
        name: &str,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// Seals and opens secret values with the deployment's key; `context` binds a sealed value
/// to where it is stored, so it cannot be moved to another name or scope.
pub trait SecretSealer: Send + Sync + 'static {
    fn seal(&self, plain: &[u8], context: &[u8]) -> Result<Vec<u8>>;
    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>>;
}

/// A session's counters and log tallies, for analytics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub writes: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub first_write_at: Option<Timestamp>,
    pub checkpoints: u64,
    pub restores: u64,
}

/// A tenant's sessions and what they hold, for usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantFootprint {
    /// (created at) of every existing session (source trees excluded).
    pub sessions_created: Vec<Timestamp>,
    pub stored_bytes: u64,
    pub egress_bytes: u64,
}

/// Health reports, counters and CAS statistics.
pub trait InsightStore: Send + Sync + 'static {
    fn put_health(
        &self,
        session: &SessionId,
        health: &crate::insight::SessionHealth,
    ) -> impl Future<Output = Result<()>> + Send;
    fn health(
        &self,
        session: &SessionId,
    ) -> impl Future<Output = Result<Option<crate::insight::SessionHealth>>> + Send;
    fn session_stats(
        &self,
        session: &SessionId,
    ) -> impl Future<Output = Result<SessionStats>> + Send;
    /// Adds bytes served by reads, per session (flushed in batches).
    fn add_bytes_read(
        &self,
        reads: Vec<(SessionId, u64)>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn tenant_footprint(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<TenantFootprint>> + Send;
    /// (reference count, number of blobs with it), ascending.
    fn refcount_histogram(&self) -> impl Future<Output = Result<Vec<(u64, u64)>>> + Send;
    /// (status, sessions in it) over every tenant, source trees excluded.
    fn session_counts(
        &self,
    ) -> impl Future<Output = Result<Vec<(aether_domain::SessionStatus, u64)>>> + Send;
}

/// Runs a job in the background (the service never spawns on its own).
pub trait Spawner: Send + Sync + 'static {
    fn spawn(&self, task: std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'static>>);
}

/// Reads import origins on the server's host: directories, git repositories and bundles.
pub trait Importer: Send + Sync + 'static {
    fn open(
        &self,
        origin: crate::sources::ImportOrigin,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<crate::sources::ImportStream>> + Send + '_>>;
}

/// Content-addressed blobs keyed by SHA-256 hex.
pub trait BlobStore: Send + Sync + 'static {
    /// Blobs not written or touched for at least `grace` (garbage-collection candidates).
    fn idle(&self, grace: std::time::Duration) -> impl Future<Output = Result<Vec<String>>> + Send;
    /// Deletes a blob if it is still idle; false when it was touched (a reference is coming).
    fn remove_if_idle(
        &self,
        hash: &str,
        grace: std::time::Duration,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Stores `data` (idempotently) and returns its hash.
    fn put(&self, data: Bytes) -> impl Future<Output = Result<String>> + Send;
    /// Stores a stream of chunks as one blob, hashing as it writes, never holding it whole;
    /// returns its hash and size. An error from the stream discards what was written.
    fn put_stream(
        &self,
        chunks: crate::ByteStream,
    ) -> impl Future<Output = Result<(String, u64)>> + Send;
    /// (number of blobs, their total bytes).
    fn usage(&self) -> impl Future<Output = Result<(u64, u64)>> + Send;
    /// Reads `[start, end)` of a blob, or all of it.
    fn get(
        &self,
        hash: &str,
        range: Option<(u64, u64)>,
    ) -> impl Future<Output = Result<Bytes>> + Send;
    /// `get` as a stream of chunks, so that a large read is sent while it is still being
    /// read. By default, the whole read as one chunk.
    fn get_chunks(
        &self,
        hash: &str,
        range: Option<(u64, u64)>,
    ) -> impl Future<Output = Result<crate::ByteStream>> + Send {
        async move { Ok(crate::body::one_chunk(self.get(hash, range).await?)) }
    }
    /// Stores the content `layout` describes: ranges of the blob `base`, the `written` bytes
    /// (one per segment the layout's pieces index), zeros. Returns its hash and size. A store
    /// that can share the unchanged parts of `base` with the new blob overrides this; by
    /// default the content is streamed into [`BlobStore::put_stream`].
    fn put_spliced(
        &self,
        base: Option<&str>,
        layout: &Splice,
        written: &[Bytes],
    ) -> impl Future<Output = Result<(String, u64)>> + Send {
        put_spliced_as_stream(self, base, layout, written)
    }
}

/// [`BlobStore::put_spliced`] for any store: the pieces streamed, in order, into
/// [`BlobStore::put_stream`].
pub async fn put_spliced_as_stream<B: BlobStore + ?Sized>(
    store: &B,
    base: Option<&str>,
    layout: &Splice,
    written: &[Bytes],
) -> Result<(String, u64)> {
    let mut parts: Vec<crate::ByteStream> = Vec::with_capacity(layout.pieces.len());
    for piece in &layout.pieces {
        parts.push(match *piece {
            Piece::Base { start, end } => {
                let hash = base.ok_or_else(|| {
                    aether_domain::Error::internal("a patch kept content of a file that had none")
                })?;
                store.get_chunks(hash, Some((start, end))).await?
            }
            Piece::Segment { index, start, end } => {
                crate::body::one_chunk(written[index].slice(start..end))
            }
            Piece::Zeros(n) => Box::pin(futures::stream::iter(crate::body::zero_runs(n).map(Ok))),
        });
    }
    store
        .put_stream(Box::pin(futures::stream::iter(parts).flatten()))
        .await
}

/// The outside world as the service sees it: time and randomness.
pub trait Environment: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    /// A fresh id suffix that sorts after every earlier one (time-ordered, then random).
    fn id_suffix(&self) -> String;
}

/// Builds a time-ordered id suffix: 12 hex digits of milliseconds, then 16 of randomness.
pub fn time_ordered_suffix(now: Timestamp, random: u64) -> String {
    let millis = (now.nanos().max(0) / 1_000_000) as u64;
    format!("{millis:012x}{random:016x}")
}
