//! The session API traits. Every implementation (service, HTTP client, fake) must behave
//! identically; the conformance suite holds them to it.

use std::future::Future;
use std::pin::Pin;

use futures::Stream;

use aether_domain::Principal;

use crate::Result;
use crate::bus::*;
use crate::insight::*;
use crate::knowledge::*;
use crate::model::*;
use crate::review::*;
use crate::secrets::*;
use crate::sources::*;

/// Per-call context: who is calling and, for mutations, the idempotency key to replay on retry.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub principal: Principal,
    pub idempotency_key: Option<String>,
}

impl Ctx {
    pub fn new(principal: Principal) -> Self {
        Ctx {
            principal,
            idempotency_key: None,
        }
    }

    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send + 'static>>;

/// Session lifecycle: create, list, fork, checkpoints, restore, archive.
pub trait SessionsApi: Send + Sync {
    fn create_session(
        &self,
        ctx: &Ctx,
        req: CreateSessionRequest,
    ) -> impl Future<Output = Result<Session>> + Send;
    fn list_sessions(
        &self,
        ctx: &Ctx,
        req: ListSessionsRequest,
    ) -> impl Future<Output = Result<Page<Session>>> + Send;
    fn get_session(
        &self,
        ctx: &Ctx,
        session_id: &str,
    ) -> impl Future<Output = Result<Session>> + Send;
    fn delete_session(
        &self,
        ctx: &Ctx,
        session_id: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn archive_session(
        &self,
        ctx: &Ctx,
        session_id: &str,
    ) -> impl Future<Output = Result<Session>> + Send;
    fn reactivate_session(
        &self,
        ctx: &Ctx,
        session_id: &str,
    ) -> impl Future<Output = Result<Session>> + Send;
    fn fork_session(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ForkSessionRequest,
    ) -> impl Future<Output = Result<Session>> + Send;
    fn create_checkpoint(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: CreateCheckpointRequest,
    ) -> impl Future<Output = Result<Checkpoint>> + Send;
    fn list_checkpoints(
        &self,
        ctx: &Ctx,
        session_id: &str,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Checkpoint>>> + Send;
    fn restore_checkpoint(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: RestoreRequest,
    ) -> impl Future<Output = Result<Session>> + Send;
}

/// The namespace of a session: listing, directories, renames, links, xattrs, batches.
pub trait FilesystemApi: Send + Sync {
    fn manifest(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ManifestRequest,
    ) -> impl Future<Output = Result<Manifest>> + Send;
    fn mkdir(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: MkdirRequest,
    ) -> impl Future<Output = Result<Entry>> + Send;
    fn rmdir(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: RmdirRequest,
    ) -> impl Future<Output = Result<()>> + Send;
    fn delete_file(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: DeleteFileRequest,
    ) -> impl Future<Output = Result<()>> + Send;
    fn rename(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: RenameRequest,
    ) -> impl Future<Output = Result<()>> + Send;
    fn link(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: LinkRequest,
    ) -> impl Future<Output = Result<Entry>> + Send;
    fn unlink(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: PathRequest,
    ) -> impl Future<Output = Result<()>> + Send;
    fn symlink(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: SymlinkRequest,
    ) -> impl Future<Output = Result<Entry>> + Send;
    fn read_symlink(
        &self,
        ctx: &Ctx,
        session_id: &str,
        path: &str,
    ) -> impl Future<Output = Result<SymlinkTarget>> + Send;
    fn set_xattr(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: SetXattrRequest,
    ) -> impl Future<Output = Result<()>> + Send;
    fn get_xattr(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: XattrRequest,
    ) -> impl Future<Output = Result<XattrValue>> + Send;
    fn list_xattrs(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: PathRequest,
    ) -> impl Future<Output = Result<XattrNames>> + Send;
    fn remove_xattr(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: XattrRequest,
    ) -> impl Future<Output = Result<()>> + Send;
    fn set_attributes(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: SetAttributesRequest,
    ) -> impl Future<Output = Result<Entry>> + Send;
    fn mknod(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: MknodRequest,
    ) -> impl Future<Output = Result<Entry>> + Send;
    fn batch(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: BatchRequest,
    ) -> impl Future<Output = Result<BatchResponse>> + Send;
}

/// File content: ranged reads, whole-file writes, partial patches.
pub trait ContentApi: Send + Sync {
    fn read_file(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ReadFileRequest,
    ) -> impl Future<Output = Result<FileContent>> + Send;
    /// `read_file` with the bytes streamed as they are read. Implementations that hold the
    /// bytes whole anyway keep this default: the whole read as one chunk.
    fn read_file_chunks(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ReadFileRequest,
    ) -> impl Future<Output = Result<FileChunks>> + Send {
        async move {
            Ok(FileChunks::whole(
                self.read_file(ctx, session_id, req).await?,
            ))
        }
    }
    fn write_file(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: WriteFileRequest,
    ) -> impl Future<Output = Result<Entry>> + Send;
    fn patch_segments(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: PatchSegmentsRequest,
    ) -> impl Future<Output = Result<Entry>> + Send;
}

/// The durable activity log and its live changefeed.
pub trait EventsApi: Send + Sync {
    fn list_events(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ListEventsRequest,
    ) -> impl Future<Output = Result<Page<Event>>> + Send;
    /// Events after `after_sequence`, then new ones as they are appended, until dropped.
    fn follow_events(
        &self,
        ctx: &Ctx,
        session_id: &str,
        after_sequence: u64,
    ) -> impl Future<Output = Result<EventStream>> + Send;
}

/// The per-session knowledge cache: versioned byte values with TTLs, compare-and-set, atomic
/// batches, prefix listing and deletion.
pub trait KnowledgeApi: Send + Sync {
    fn cache_get(
        &self,
        ctx: &Ctx,
        session_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<CacheEntry>> + Send;
    fn cache_put(
        &self,
        ctx: &Ctx,
        session_id: &str,
        key: &str,
        req: PutCacheRequest,
    ) -> impl Future<Output = Result<CacheMetadata>> + Send;
    fn cache_delete(
        &self,
        ctx: &Ctx,
        session_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn cache_exists(
        &self,
        ctx: &Ctx,
        session_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<CacheExists>> + Send;
    fn cache_metadata(
        &self,
        ctx: &Ctx,
        session_id: &str,
        key: &str,
    ) -> impl Future<Output = Result<CacheMetadata>> + Send;
    fn cache_compare_and_set(
        &self,
        ctx: &Ctx,
        session_id: &str,
        key: &str,
        req: CompareAndSetRequest,
    ) -> impl Future<Output = Result<CompareAndSetResponse>> + Send;
    fn cache_keys(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ListCacheKeysRequest,
    ) -> impl Future<Output = Result<Page<String>>> + Send;
    fn cache_stats(
        &self,
        ctx: &Ctx,
        session_id: &str,
    ) -> impl Future<Output = Result<CacheStats>> + Send;
    fn cache_batch_get(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: CacheKeysRequest,
    ) -> impl Future<Output = Result<BatchGetResponse>> + Send;
    fn cache_batch_set(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: BatchSetRequest,
    ) -> impl Future<Output = Result<BatchSetResponse>> + Send;
    fn cache_batch_delete(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: CacheKeysRequest,
    ) -> impl Future<Output = Result<DeletedCount>> + Send;
    fn cache_delete_by_prefix(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: DeleteByPrefixRequest,
    ) -> impl Future<Output = Result<DeletedCount>> + Send;
}

/// Review: commits, approvals, annotations and review requests.
pub trait ReviewApi: Send + Sync {
    /// Records the session's tree as a commit; gated by approval when the policy lists `COMMIT`.
    fn commit(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: CommitRequest,
    ) -> impl Future<Output = Result<Commit>> + Send;
    fn list_commits(
        &self,
        ctx: &Ctx,
        session_id: &str,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Commit>>> + Send;
    fn request_approval(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: RequestApprovalRequest,
    ) -> impl Future<Output = Result<Approval>> + Send;
    fn grant_approval(
        &self,
        ctx: &Ctx,
        session_id: &str,
        approval_id: &str,
        req: DecideApprovalRequest,
    ) -> impl Future<Output = Result<Approval>> + Send;
    fn deny_approval(
        &self,
        ctx: &Ctx,
        session_id: &str,
        approval_id: &str,
        req: DecideApprovalRequest,
    ) -> impl Future<Output = Result<Approval>> + Send;
    fn list_approvals(
        &self,
        ctx: &Ctx,
        session_id: &str,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Approval>>> + Send;
    fn create_annotation(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: CreateAnnotationRequest,
    ) -> impl Future<Output = Result<Annotation>> + Send;
    fn list_annotations(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ListAnnotationsRequest,
    ) -> impl Future<Output = Result<Page<Annotation>>> + Send;
    fn update_annotation(
        &self,
        ctx: &Ctx,
        session_id: &str,
        annotation_id: &str,
        req: UpdateAnnotationRequest,
    ) -> impl Future<Output = Result<Annotation>> + Send;
    fn request_review(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: RequestReviewRequest,
    ) -> impl Future<Output = Result<Session>> + Send;
}

/// Sources: baselines with immutable revisions, imports and promotion of sessions.
pub trait SourcesApi: Send + Sync {
    fn create_source(
        &self,
        ctx: &Ctx,
        req: CreateSourceRequest,
    ) -> impl Future<Output = Result<Source>> + Send;
    fn list_sources(
        &self,
        ctx: &Ctx,
        req: ListSourcesRequest,
    ) -> impl Future<Output = Result<Page<Source>>> + Send;
    fn get_source(&self, ctx: &Ctx, source_id: &str)
    -> impl Future<Output = Result<Source>> + Send;
    /// Uploads a tar archive (`SOURCE_KIND_ARCHIVE`) and starts importing it.
    fn upload_archive(
        &self,
        ctx: &Ctx,
        source_id: &str,
        archive: crate::FileBody,
    ) -> impl Future<Output = Result<Job>> + Send;
    /// Imports the source's origin as its first revision (a job).
    fn start_import(&self, ctx: &Ctx, source_id: &str) -> impl Future<Output = Result<Job>> + Send;
    /// Imports the origin again as a new revision (a job).
    fn refresh_source(
        &self,
        ctx: &Ctx,
        source_id: &str,
    ) -> impl Future<Output = Result<Job>> + Send;
    /// Makes a session's tree the source's next revision (approval-gated; conflicts with
    /// revisions made since the session's base put the session in CONFLICT).
    fn promote_session(
        &self,
        ctx: &Ctx,
        source_id: &str,
        req: PromoteSessionRequest,
    ) -> impl Future<Output = Result<Job>> + Send;
    fn get_job(
        &self,
        ctx: &Ctx,
        source_id: &str,
        job_id: &str,
    ) -> impl Future<Output = Result<Job>> + Send;
}

/// The session message bus: publish, and subscribe by topic globs with replay.
pub trait BusApi: Send + Sync {
    fn publish(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: PublishRequest,
    ) -> impl Future<Output = Result<BusMessage>> + Send;
    /// Retained matching messages (up to `replay_limit`), then live ones, until dropped. A
    /// slow subscriber is told what it missed; it never slows publishers.
    fn subscribe(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: SubscribeRequest,
    ) -> impl Future<Output = Result<BusStream>> + Send;
}

/// Secrets: values kept encrypted, visible to a session by scope (its own, its tenant's, or
/// the deployment's), listed by name only.
pub trait SecretsApi: Send + Sync {
    /// Names (and scopes) of every secret the session can see.
    fn list_secrets(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ListSecretsRequest,
    ) -> impl Future<Output = Result<Page<SecretInfo>>> + Send;
    fn get_secret(
        &self,
        ctx: &Ctx,
        session_id: &str,
        name: &str,
        scope: SecretScope,
    ) -> impl Future<Output = Result<SecretValue>> + Send;
    fn put_secret(
        &self,
        ctx: &Ctx,
        session_id: &str,
        name: &str,
        scope: SecretScope,
        req: PutSecretRequest,
    ) -> impl Future<Output = Result<SecretInfo>> + Send;
    fn delete_secret(
        &self,
        ctx: &Ctx,
        session_id: &str,
        name: &str,
        scope: SecretScope,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Health reports, analytics, tenant usage and CAS metrics.
pub trait InsightApi: Send + Sync {
    fn get_health(
        &self,
        ctx: &Ctx,
        session_id: &str,
    ) -> impl Future<Output = Result<SessionHealth>> + Send;
    fn report_health(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ReportHealthRequest,
    ) -> impl Future<Output = Result<SessionHealth>> + Send;
    fn report_test_results(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: TestResultsRequest,
    ) -> impl Future<Output = Result<SessionHealth>> + Send;
    fn analytics(
        &self,
        ctx: &Ctx,
        session_id: &str,
    ) -> impl Future<Output = Result<SessionAnalytics>> + Send;
    fn usage(&self, ctx: &Ctx, req: UsageRequest) -> impl Future<Output = Result<Usage>> + Send;
    fn cas_metrics(&self, ctx: &Ctx) -> impl Future<Output = Result<CasMetrics>> + Send;
    fn cas_refcounts(&self, ctx: &Ctx) -> impl Future<Output = Result<CasRefcounts>> + Send;
}

/// Everything a session offers; implemented automatically for any type with all four parts.
pub trait SessionApi: SessionsApi + FilesystemApi + ContentApi + EventsApi {}

impl<T: SessionsApi + FilesystemApi + ContentApi + EventsApi> SessionApi for T {}

/// Whether the implementation can serve requests (its storage answers), for `/readyz`.
pub trait Readiness: Send + Sync {
    fn ready(&self) -> impl Future<Output = Result<()>> + Send;
}

/// The whole product API: sessions and files plus the workflow surfaces around them.
pub trait AetherApi:
    SessionApi + KnowledgeApi + ReviewApi + SourcesApi + BusApi + SecretsApi + InsightApi
{
}

impl<T> AetherApi for T where
    T: SessionApi + KnowledgeApi + ReviewApi + SourcesApi + BusApi + SecretsApi + InsightApi
{
}
