//! Fault injection around any session API: latency, errors before the call, and dropped replies
//! (the call takes effect but the caller sees `UNAVAILABLE`, as after a lost response).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aether_domain::{Error, Result};
use aether_ports::*;

/// What to do to one operation.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    pub latency: Option<Duration>,
    /// Fail before reaching the inner API.
    pub error: Option<Error>,
    /// Let the call happen, then report `UNAVAILABLE` instead of its reply.
    pub drop_reply: bool,
    /// How many calls this applies to; `None` for every call.
    pub times: Option<u32>,
    /// For streamed replies (`read_file_chunks`): end the stream with `UNAVAILABLE` once this
    /// many bytes have passed, as when the connection breaks mid-reply.
    pub cut_stream_after: Option<u64>,
}

/// Faults by operation name (the trait method name, e.g. `write_file`; `*` for every operation).
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    faults: Arc<Mutex<HashMap<String, Fault>>>,
    calls: Arc<Mutex<HashMap<String, u64>>>,
}

impl FaultPlan {
    pub fn set(&self, op: &str, fault: Fault) {
        if let Ok(mut f) = self.faults.lock() {
            f.insert(op.to_owned(), fault);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut f) = self.faults.lock() {
            f.clear();
        }
    }

    /// How many calls of `op` the wrapped API has seen (faulted ones included).
    pub fn calls(&self, op: &str) -> u64 {
        self.calls
            .lock()
            .map(|c| c.get(op).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Takes the fault for `op` (or `*`), counting down limited ones.
    fn take(&self, op: &str) -> Option<Fault> {
        if let Ok(mut calls) = self.calls.lock() {
            *calls.entry(op.to_owned()).or_default() += 1;
        }
        let mut faults = self.faults.lock().ok()?;
        let key = if faults.contains_key(op) { op } else { "*" };
        let fault = faults.get_mut(key)?;
        match &mut fault.times {
            Some(0) => None,
            Some(n) => {
                *n -= 1;
                Some(fault.clone())
            }
            None => Some(fault.clone()),
        }
    }
}

/// Wraps an API with a [`FaultPlan`].
#[derive(Clone)]
pub struct Faulty<A> {
    inner: A,
    plan: FaultPlan,
}

impl<A> Faulty<A> {
    pub fn new(inner: A, plan: FaultPlan) -> Self {
        Faulty { inner, plan }
    }

    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    async fn before(&self, op: &str) -> Result<Option<Fault>> {
        let Some(fault) = self.plan.take(op) else {
            return Ok(None);
        };
        if let Some(d) = fault.latency {
            tokio::time::sleep(d).await;
        }
        if let Some(e) = &fault.error {
            return Err(e.clone());
        }
        Ok(Some(fault))
    }

    fn after<T>(fault: Option<Fault>, op: &str, result: Result<T>) -> Result<T> {
        match fault {
            Some(f) if f.drop_reply => Err(Error::unavailable(format!(
                "reply to {op} was dropped (injected fault)"
            ))),
            _ => result,
        }
    }
}

macro_rules! faulty_methods {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(
            async fn $name(&self, ctx: &Ctx, $($arg: $ty),*) -> Result<$ret> {
                let fault = self.before(stringify!($name)).await?;
                let result = self.inner.$name(ctx, $($arg),*).await;
                Self::after(fault, stringify!($name), result)
            }
        )*
    };
}

impl<A: SessionsApi> SessionsApi for Faulty<A> {
    faulty_methods! {
        create_session(req: CreateSessionRequest) -> Session;
        list_sessions(req: ListSessionsRequest) -> Page<Session>;
        get_session(session_id: &str) -> Session;
        delete_session(session_id: &str) -> ();
        archive_session(session_id: &str) -> Session;
        reactivate_session(session_id: &str) -> Session;
        fork_session(session_id: &str, req: ForkSessionRequest) -> Session;
        create_checkpoint(session_id: &str, req: CreateCheckpointRequest) -> Checkpoint;
        list_checkpoints(session_id: &str, page: PageRequest) -> Page<Checkpoint>;
        restore_checkpoint(session_id: &str, req: RestoreRequest) -> Session;
    }
}

impl<A: FilesystemApi> FilesystemApi for Faulty<A> {
    faulty_methods! {
        manifest(session_id: &str, req: ManifestRequest) -> Manifest;
        mkdir(session_id: &str, req: MkdirRequest) -> Entry;
        rmdir(session_id: &str, req: RmdirRequest) -> ();
        delete_file(session_id: &str, req: DeleteFileRequest) -> ();
        rename(session_id: &str, req: RenameRequest) -> ();
        link(session_id: &str, req: LinkRequest) -> Entry;
        unlink(session_id: &str, req: PathRequest) -> ();
        symlink(session_id: &str, req: SymlinkRequest) -> Entry;
        read_symlink(session_id: &str, path: &str) -> SymlinkTarget;
        set_xattr(session_id: &str, req: SetXattrRequest) -> ();
        get_xattr(session_id: &str, req: XattrRequest) -> XattrValue;
        list_xattrs(session_id: &str, req: PathRequest) -> XattrNames;
        remove_xattr(session_id: &str, req: XattrRequest) -> ();
        set_attributes(session_id: &str, req: SetAttributesRequest) -> Entry;
        mknod(session_id: &str, req: MknodRequest) -> Entry;
        batch(session_id: &str, req: BatchRequest) -> BatchResponse;
    }
}

impl<A: ContentApi> ContentApi for Faulty<A> {
    faulty_methods! {
        read_file(session_id: &str, req: ReadFileRequest) -> FileContent;
        write_file(session_id: &str, req: WriteFileRequest) -> Entry;
        patch_segments(session_id: &str, req: PatchSegmentsRequest) -> Entry;
    }

    async fn read_file_chunks(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ReadFileRequest,
    ) -> Result<FileChunks> {
        let fault = self.before("read_file_chunks").await?;
        let cut = fault.as_ref().and_then(|f| f.cut_stream_after);
        let mut result = Self::after(
            fault,
            "read_file_chunks",
            self.inner.read_file_chunks(ctx, session_id, req).await,
        );
        if let (Ok(reply), Some(limit)) = (&mut result, cut) {
            let chunks = std::mem::replace(&mut reply.chunks, Box::pin(futures::stream::empty()));
            reply.chunks = cut_after(chunks, limit);
        }
        result
    }
}

/// Lets `limit` bytes of `chunks` through, then fails.
fn cut_after(chunks: ByteStream, limit: u64) -> ByteStream {
    use futures::StreamExt;
    let mut left = limit;
    let passed = chunks.scan(false, move |cut, chunk| {
        if *cut {
            return futures::future::ready(None);
        }
        let out = match chunk {
            Ok(c) if (c.len() as u64) <= left => {
                left -= c.len() as u64;
                Ok(c)
            }
            Ok(_) => {
                *cut = true;
                Err(Error::unavailable(
                    "the reply was cut off mid-stream (injected fault)",
                ))
            }
            Err(e) => Err(e),
        };
        futures::future::ready(Some(out))
    });
    Box::pin(passed)
}

impl<A: KnowledgeApi> KnowledgeApi for Faulty<A> {
    faulty_methods! {
        cache_get(session_id: &str, key: &str) -> CacheEntry;
        cache_put(session_id: &str, key: &str, req: PutCacheRequest) -> CacheMetadata;
        cache_delete(session_id: &str, key: &str) -> ();
        cache_exists(session_id: &str, key: &str) -> CacheExists;
        cache_metadata(session_id: &str, key: &str) -> CacheMetadata;
        cache_compare_and_set(session_id: &str, key: &str, req: CompareAndSetRequest) -> CompareAndSetResponse;
        cache_keys(session_id: &str, req: ListCacheKeysRequest) -> Page<String>;
        cache_stats(session_id: &str) -> CacheStats;
        cache_batch_get(session_id: &str, req: CacheKeysRequest) -> BatchGetResponse;
        cache_batch_set(session_id: &str, req: BatchSetRequest) -> BatchSetResponse;
        cache_batch_delete(session_id: &str, req: CacheKeysRequest) -> DeletedCount;
        cache_delete_by_prefix(session_id: &str, req: DeleteByPrefixRequest) -> DeletedCount;
    }
}

impl<A: ReviewApi> ReviewApi for Faulty<A> {
    faulty_methods! {
        commit(session_id: &str, req: CommitRequest) -> Commit;
        list_commits(session_id: &str, page: PageRequest) -> Page<Commit>;
        request_approval(session_id: &str, req: RequestApprovalRequest) -> Approval;
        grant_approval(session_id: &str, approval_id: &str, req: DecideApprovalRequest) -> Approval;
        deny_approval(session_id: &str, approval_id: &str, req: DecideApprovalRequest) -> Approval;
        list_approvals(session_id: &str, page: PageRequest) -> Page<Approval>;
        create_annotation(session_id: &str, req: CreateAnnotationRequest) -> Annotation;
        list_annotations(session_id: &str, req: ListAnnotationsRequest) -> Page<Annotation>;
        update_annotation(session_id: &str, annotation_id: &str, req: UpdateAnnotationRequest) -> Annotation;
        request_review(session_id: &str, req: RequestReviewRequest) -> Session;
    }
}

impl<A: SourcesApi> SourcesApi for Faulty<A> {
    async fn create_source(&self, ctx: &Ctx, req: CreateSourceRequest) -> Result<Source> {
        let fault = self.before("create_source").await?;
        let result = self.inner.create_source(ctx, req).await;
        Self::after(fault, "create_source", result)
    }
    async fn list_sources(&self, ctx: &Ctx, req: ListSourcesRequest) -> Result<Page<Source>> {
        let fault = self.before("list_sources").await?;
        let result = self.inner.list_sources(ctx, req).await;
        Self::after(fault, "list_sources", result)
    }
    faulty_methods! {
        get_source(source_id: &str) -> Source;
        upload_archive(source_id: &str, archive: FileBody) -> Job;
        start_import(source_id: &str) -> Job;
        refresh_source(source_id: &str) -> Job;
        promote_session(source_id: &str, req: PromoteSessionRequest) -> Job;
        get_job(source_id: &str, job_id: &str) -> Job;
    }
}

impl<A: BusApi> BusApi for Faulty<A> {
    faulty_methods! {
        publish(session_id: &str, req: PublishRequest) -> BusMessage;
        subscribe(session_id: &str, req: SubscribeRequest) -> BusStream;
    }
}

impl<A: SecretsApi> SecretsApi for Faulty<A> {
    faulty_methods! {
        list_secrets(session_id: &str, req: ListSecretsRequest) -> Page<SecretInfo>;
        get_secret(session_id: &str, name: &str, scope: SecretScope) -> SecretValue;
        put_secret(session_id: &str, name: &str, scope: SecretScope, req: PutSecretRequest) -> SecretInfo;
        delete_secret(session_id: &str, name: &str, scope: SecretScope) -> ();
    }
}

impl<A: InsightApi> InsightApi for Faulty<A> {
    faulty_methods! {
        get_health(session_id: &str) -> SessionHealth;
        report_health(session_id: &str, req: ReportHealthRequest) -> SessionHealth;
        report_test_results(session_id: &str, req: TestResultsRequest) -> SessionHealth;
        analytics(session_id: &str) -> SessionAnalytics;
        usage(req: UsageRequest) -> Usage;
    }
    async fn cas_metrics(&self, ctx: &Ctx) -> Result<CasMetrics> {
        let fault = self.before("cas_metrics").await?;
        let result = self.inner.cas_metrics(ctx).await;
        Self::after(fault, "cas_metrics", result)
    }
    async fn cas_refcounts(&self, ctx: &Ctx) -> Result<CasRefcounts> {
        let fault = self.before("cas_refcounts").await?;
        let result = self.inner.cas_refcounts(ctx).await;
        Self::after(fault, "cas_refcounts", result)
    }
}

impl<A: EventsApi> EventsApi for Faulty<A> {
    faulty_methods! {
        list_events(session_id: &str, req: ListEventsRequest) -> Page<Event>;
        follow_events(session_id: &str, after_sequence: u64) -> EventStream;
    }
}

impl<A: Readiness> Readiness for Faulty<A> {
    async fn ready(&self) -> Result<()> {
        let fault = self.before("ready").await?;
        let result = self.inner.ready().await;
        Self::after(fault, "ready", result)
    }
}
