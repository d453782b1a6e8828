//! Source use cases: sources with immutable revisions (checkpoints of a hidden holder tree),
//! import jobs (archive, host path, git, bundle), sessions started from a revision in O(1),
//! and promotion of a session's changes as the next revision, with conflict detection.

use std::collections::{BTreeMap, BTreeSet};

use aether_domain::session::Transition;
use aether_domain::tree::Op;
use aether_domain::{
    Action, CheckpointId, Entry, EntryKind, Error, Result, Scope, SessionId, SessionPath,
    SessionStatus, TenantId,
};
use aether_ports::plan::{self, Planned};
use aether_ports::store::{
    BlobStore, Environment, HOLDER_PREFIX, ListQuery, MetadataStore, ReviewStore, RevisionRecord,
    SessionRecord, SourceRecord, SourceStore, TreeRef,
};
use aether_ports::*;
use futures::StreamExt;

use crate::Service;
use crate::mutate::Target;

pub(crate) const KINDS: [&str; 4] = [
    "SOURCE_KIND_LOCAL_PATH",
    "SOURCE_KIND_ARCHIVE",
    "SOURCE_KIND_GIT",
    "SOURCE_KIND_GIT_BUNDLE",
];
const CREATING: &str = "UNDERLAY_SOURCE_STATUS_CREATING";
const READY: &str = "UNDERLAY_SOURCE_STATUS_READY";
const FAILED: &str = "UNDERLAY_SOURCE_STATUS_FAILED";
const QUEUED: &str = "UNDERLAY_IMPORT_JOB_STATE_QUEUED";
const RUNNING: &str = "UNDERLAY_IMPORT_JOB_STATE_RUNNING";
const SUCCEEDED: &str = "UNDERLAY_IMPORT_JOB_STATE_SUCCEEDED";
const JOB_FAILED: &str = "UNDERLAY_IMPORT_JOB_STATE_FAILED";
/// How often a running import records its progress (in files).
const PROGRESS_EVERY: u64 = 500;
/// How many conflicting paths a promotion's error names.
const SHOWN_CONFLICTS: usize = 50;

/// How a revision came to be, as it records.
struct Made<'a> {
    by: &'a str,
    session: Option<&'a SessionId>,
    files: u64,
    bytes: u64,
}

/// What an import reads.
enum Feed {
    /// A tar archive stored as a blob.
    Archive(String),
    Host(ImportOrigin),
}

fn job_missing(id: &str) -> Error {
    Error::not_found(format!("job {id} not found"))
}

fn source_missing(id: &str) -> Error {
    Error::not_found(format!("source {id} not found"))
}

/// What makes two versions of a path the same for promotion: kind, content, mode, target.
fn same(a: &Entry, b: &Entry) -> bool {
    a.kind == b.kind && a.content_hash == b.content_hash && a.mode == b.mode && a.target == b.target
}

/// Paths whose entry differs between `base` and `other`: `Some(entry)` if written, `None` if gone.
fn diff(
    base: &BTreeMap<SessionPath, Entry>,
    other: &BTreeMap<SessionPath, Entry>,
) -> BTreeMap<SessionPath, Option<Entry>> {
    let mut out = BTreeMap::new();
    for (p, e) in other {
        if p.is_root() {
            continue;
        }
        match base.get(p) {
            Some(b) if same(b, e) => {}
            _ => {
                out.insert(p.clone(), Some(e.clone()));
            }
        }
    }
    for p in base.keys() {
        if !p.is_root() && !other.contains_key(p) {
            out.insert(p.clone(), None);
        }
    }
    out
}

fn check_origin(kind: &str, origin: &SourceOrigin) -> Result<()> {
    let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
    let (ok, need) = match kind {
        "SOURCE_KIND_LOCAL_PATH" => (
            has(&origin.path) && origin.url.is_none() && origin.bundle_path.is_none(),
            "origin.path (a directory on the server's host)",
        ),
        "SOURCE_KIND_GIT" => (
            has(&origin.url) && origin.path.is_none() && origin.bundle_path.is_none(),
            "origin.url (and optionally origin.ref)",
        ),
        "SOURCE_KIND_GIT_BUNDLE" => (
            has(&origin.bundle_path) && origin.path.is_none() && origin.url.is_none(),
            "origin.bundlePath (a bundle file on the server's host)",
        ),
        "SOURCE_KIND_ARCHIVE" => (
            *origin == SourceOrigin::default(),
            "no origin (upload the tar with PUT /v1/sources/{id}/archive)",
        ),
        other => {
            return Err(Error::invalid(format!(
                "kind {other:?} is not one of {}",
                KINDS.join(", ")
            )));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("a {kind} source takes {need}")))
    }
}

fn host_origin(source: &Source) -> Result<ImportOrigin> {
    let o = &source.origin;
    match source.kind.as_str() {
        "SOURCE_KIND_LOCAL_PATH" => Ok(ImportOrigin::LocalPath(o.path.clone().unwrap_or_default())),
        "SOURCE_KIND_GIT" => Ok(ImportOrigin::Git {
            url: o.url.clone().unwrap_or_default(),
            reference: o.reference.clone(),
        }),
        "SOURCE_KIND_GIT_BUNDLE" => Ok(ImportOrigin::GitBundle(
            o.bundle_path.clone().unwrap_or_default(),
        )),
        _ => Err(Error::precondition(format!(
            "source {} is an archive source: upload a tar with PUT /v1/sources/{}/archive",
            source.id, source.id
        ))),
    }
}

impl<M, B, E> Service<M, B, E>
where
    M: MetadataStore + SourceStore + ReviewStore,
    B: BlobStore,
    E: Environment,
{
    async fn source_of(&self, ctx: &Ctx, scope: Scope, id: &str) -> Result<SourceRecord> {
        ctx.principal.require(scope)?;
        check_source_id(id)?;
        self.inner
            .meta
            .source(&ctx.principal.tenant, id)
            .await?
            .ok_or_else(|| source_missing(id))
    }

    fn new_job(&self, ctx: &Ctx, source_id: &str, kind: &str) -> Job {
        let now = self.inner.env.now();
        Job {
            id: format!("job_{}", self.inner.env.id_suffix()),
            source_id: source_id.to_owned(),
            kind: kind.to_owned(),
            state: QUEUED.to_owned(),
            requested_by: ctx.principal.name.clone(),
            bytes_processed: 0,
            files_processed: 0,
            revision_id: None,
            error_code: None,
            error_message: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Records `job` and runs it: in the background when the service has a spawner, else to
    /// its end before answering.
    async fn launch(
        &self,
        tenant: &TenantId,
        record: SourceRecord,
        job: Job,
        feed: Feed,
    ) -> Result<Job> {
        self.inner.meta.put_job(tenant, &job).await?;
        let Some(spawner) = self.inner.spawner.clone() else {
            return Ok(self.run_import(tenant.clone(), record, job, feed).await);
        };
        let this = self.clone();
        let (tenant, reply) = (tenant.clone(), job.clone());
        spawner.spawn(Box::pin(async move {
            this.run_import(tenant, record, job, feed).await;
        }));
        Ok(reply)
    }

    /// Runs an import to its end; failures end up in the job (and a first import's failure in
    /// the source's status), never lost.
    async fn run_import(
        &self,
        tenant: TenantId,
        record: SourceRecord,
        mut job: Job,
        feed: Feed,
    ) -> Job {
        job.state = RUNNING.to_owned();
        job.updated_at = self.inner.env.now();
        let _ = self.inner.meta.put_job(&tenant, &job).await;
        let result = self.import(&tenant, &record, &mut job, feed).await;
        job.updated_at = self.inner.env.now();
        match result {
            Ok(revision) => {
                job.state = SUCCEEDED.to_owned();
                job.revision_id = Some(revision);
            }
            Err(e) => {
                job.state = JOB_FAILED.to_owned();
                job.error_code = Some(e.code.as_str().to_owned());
                job.error_message = Some(e.message.clone());
                if let Ok(Some(mut current)) =
                    self.inner.meta.source(&tenant, &record.source.id).await
                    && current.source.status == CREATING
                {
                    current.source.status = FAILED.to_owned();
                    current.source.updated_at = job.updated_at;
                    let _ = self.inner.meta.put_source(&tenant, &current.source).await;
                }
            }
        }
        if let Err(e) = self.inner.meta.put_job(&tenant, &job).await {
            tracing::error!(job = %job.id, error = %e, "could not record the end of an import job");
        }
        job
    }

    /// Reads the feed into the holder's tree (replacing it whole) and freezes it as a revision.
    async fn import(
        &self,
        tenant: &TenantId,
        record: &SourceRecord,
        job: &mut Job,
        feed: Feed,
    ) -> Result<String> {
        let mut items = match feed {
            Feed::Archive(hash) => {
                let data = self.inner.blobs.get(&hash, None).await?;
                let items = crate::archive::read_tar(&data)?;
                futures::stream::iter(items.into_iter().map(Ok)).boxed()
            }
            Feed::Host(origin) => {
                let importer = self.inner.importer.clone().ok_or_else(|| {
                    Error::precondition(
                        "this server imports only uploaded archives (no host importer is configured)",
                    )
                })?;
                importer.open(origin).await?
            }
        };
        let mut planned = vec![Planned::Op(Op::ReplaceSubtree {
            path: SessionPath::root(),
            entries: Vec::new(),
        })];
        while let Some(item) = items.next().await {
            let op = match item? {
                ImportItem::Dir { path, mode } => Op::Mkdir {
                    path: plan::path(&path)?,
                    mode: Some(mode),
                    parents: true,
                },
                ImportItem::File { path, mode, data } => {
                    let size = data.len() as u64;
                    let hash = self.inner.blobs.put(data).await?;
                    job.files_processed += 1;
                    job.bytes_processed += size;
                    if job.files_processed.is_multiple_of(PROGRESS_EVERY) {
                        job.updated_at = self.inner.env.now();
                        self.inner.meta.put_job(tenant, job).await?;
                    }
                    Op::WriteBlob {
                        path: plan::path(&path)?,
                        hash,
                        size,
                        mode: Some(mode),
                        parents: true,
                        expected_hash: None,
                    }
                }
                ImportItem::Symlink { path, target } => {
                    let path = plan::path(&path)?;
                    if !path.parent().is_root() {
                        planned.push(Planned::Op(Op::Mkdir {
                            path: path.parent(),
                            mode: None,
                            parents: true,
                        }));
                    }
                    Op::Symlink { path, target }
                }
            };
            planned.push(Planned::Op(op));
        }
        let made_by = if record.source.revision_count == 0 {
            "IMPORT"
        } else {
            "REFRESH"
        };
        let made = Made {
            by: made_by,
            session: None,
            files: job.files_processed,
            bytes: job.bytes_processed,
        };
        self.new_revision(tenant, &record.source.id, planned, made)
            .await
    }

    /// Applies `planned` to the source's holder tree and freezes the result as its next
    /// revision; returns the revision's id.
    async fn new_revision(
        &self,
        tenant: &TenantId,
        source_id: &str,
        planned: Vec<Planned>,
        made: Made<'_>,
    ) -> Result<String> {
        let record = self
            .inner
            .meta
            .source(tenant, source_id)
            .await?
            .ok_or_else(|| source_missing(source_id))?;
        let system = Ctx::new(aether_domain::Principal::full_access(
            tenant.clone(),
            "aether.sources",
        ));
        self.mutate_tree(
            &system,
            Target::Holder(tenant, &record.holder),
            planned,
            |_| Outcome::Done,
        )
        .await?;
        let holder = self
            .inner
            .meta
            .session(tenant, &record.holder)
            .await?
            .ok_or_else(|| Error::internal(format!("source tree of {source_id} is missing")))?;
        let now = self.inner.env.now();
        let checkpoint = Checkpoint {
            id: CheckpointId::from_suffix(&self.inner.env.id_suffix())
                .as_str()
                .to_owned(),
            session_id: holder.id.as_str().to_owned(),
            name: None,
            generation: holder.generation,
            created_at: now,
        };
        let mut event = self.event(&system, "CHECKPOINT_CREATED", holder.generation);
        event.related_id = Some(checkpoint.id.clone());
        self.inner
            .meta
            .create_checkpoint(tenant, &holder.id, &checkpoint, event, None)
            .await?;
        let mut source = record.source;
        let revision = Revision {
            id: format!("rev_{}", self.inner.env.id_suffix()),
            source_id: source.id.clone(),
            number: source.revision_count + 1,
            parent_revision_id: source.latest_revision_id.clone(),
            made_by: made.by.to_owned(),
            session_id: made.session.map(|s| s.as_str().to_owned()),
            file_count: made.files,
            byte_count: made.bytes,
            created_at: now,
        };
        source.latest_revision_id = Some(revision.id.clone());
        source.revision_count += 1;
        source.status = READY.to_owned();
        source.updated_at = now;
        let id = revision.id.clone();
        self.inner
            .meta
            .insert_revision(
                tenant,
                &RevisionRecord {
                    revision,
                    checkpoint: CheckpointId::parse(&checkpoint.id)?,
                },
                &source,
            )
            .await?;
        Ok(id)
    }

    /// Every entry of a tree, by path.
    async fn whole_tree(&self, tree: TreeRef) -> Result<BTreeMap<SessionPath, Entry>> {
        let mut out = BTreeMap::new();
        let mut after = None;
        loop {
            let (page, more) = self
                .inner
                .meta
                .list(
                    &tree,
                    &ListQuery {
                        dir: SessionPath::root(),
                        recursive: true,
                        after: after.clone(),
                        limit: 1000,
                    },
                )
                .await?;
            after = page.last().map(|e| e.path.clone());
            out.extend(page.into_iter().map(|e| (e.path.clone(), e)));
            if !more {
                return Ok(out);
            }
        }
    }

    fn revision_tree(
        &self,
        tenant: &TenantId,
        record: &SourceRecord,
        rev: &RevisionRecord,
    ) -> TreeRef {
        TreeRef::Checkpoint {
            tenant: tenant.clone(),
            session: record.holder.clone(),
            checkpoint: rev.checkpoint.clone(),
        }
    }

    async fn revision_of(
        &self,
        tenant: &TenantId,
        source_id: &str,
        id: &str,
    ) -> Result<RevisionRecord> {
        self.inner
            .meta
            .revision(tenant, source_id, id)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("revision {id} of source {source_id} not found"))
            })
    }

    /// Creates a session over a revision (the latest when none is named), in O(1).
    pub(crate) async fn create_session_from_source(
        &self,
        ctx: &Ctx,
        source_ref: &SourceRef,
        tags: BTreeMap<String, String>,
        policy: Vec<Action>,
    ) -> Result<Session> {
        ctx.principal.require(Scope::SourceRead)?;
        let tenant = ctx.principal.tenant.clone();
        check_source_id(&source_ref.source_id)?;
        let record = self
            .inner
            .meta
            .source(&tenant, &source_ref.source_id)
            .await?
            .ok_or_else(|| source_missing(&source_ref.source_id))?;
        let rev_id = match (&source_ref.revision_id, &record.source.latest_revision_id) {
            (Some(r), _) => r.clone(),
            (None, Some(latest)) => latest.clone(),
            (None, None) => {
                return Err(Error::precondition(format!(
                    "source {} has no revision yet (status {}); import it first",
                    record.source.id, record.source.status
                )));
            }
        };
        let rev = self
            .revision_of(&tenant, &record.source.id, &rev_id)
            .await?;
        let checkpoint = self
            .inner
            .meta
            .checkpoint(&tenant, &record.holder, &rev.checkpoint)
            .await?
            .ok_or_else(|| Error::internal(format!("the tree of revision {rev_id} is missing")))?;
        let now = self.inner.env.now();
        let rec = SessionRecord {
            id: SessionId::from_suffix(&self.inner.env.id_suffix()),
            tenant: tenant.clone(),
            base_fingerprint: crate::fingerprint(&["source", &record.source.id, &rev_id]),
            source_ref: Some(SourceRef {
                source_id: record.source.id.clone(),
                revision_id: Some(rev_id.clone()),
            }),
            status: SessionStatus::Active,
            tags,
            // Inode numbers keep growing from the revision's, as in a fork.
            generation: checkpoint.generation,
            created_at: now,
            last_activity_at: now,
            approval_policy: policy,
        };
        let session = self.view(&rec);
        let mut event = self.event(ctx, "SESSION_CREATED", rec.generation);
        event.related_id = Some(rev_id);
        let idem = self.idempotency(ctx, Outcome::Session(session.clone()));
        self.inner
            .meta
            .insert_session_at(&record.holder, &rev.checkpoint, &rec, event, idem)
            .await?;
        Ok(session)
    }

    /// The promotion itself; on a conflict the session is marked and the error names paths.
    async fn promote(
        &self,
        ctx: &Ctx,
        record: &SourceRecord,
        session_id: &str,
        job: &mut Job,
    ) -> Result<String> {
        let tenant = ctx.principal.tenant.clone();
        let session = self.authorize(ctx, Scope::SessionRead, session_id).await?;
        let base_id = match &session.source_ref {
            Some(r) if r.source_id == record.source.id => r.revision_id.clone().unwrap_or_default(),
            _ => {
                return Err(Error::precondition(format!(
                    "session {session_id} was not created from source {}",
                    record.source.id
                )));
            }
        };
        if session.status != SessionStatus::Active {
            return Err(Error::precondition(format!(
                "session {session_id} is {}; only an active session can be promoted",
                session.status.as_str()
            ))
            .with_reason(aether_domain::Reason::InvalidState));
        }
        self.gate(&session, Action::Promote).await?;
        let base = self
            .revision_of(&tenant, &record.source.id, &base_id)
            .await?;
        let base_tree = self
            .whole_tree(self.revision_tree(&tenant, record, &base))
            .await?;
        let ours_tree = self
            .whole_tree(TreeRef::Session {
                tenant: tenant.clone(),
                session: session.id.clone(),
            })
            .await?;
        let ours = diff(&base_tree, &ours_tree);
        let latest_id = record.source.latest_revision_id.clone().unwrap_or_default();
        let (theirs, latest_tree) = if latest_id == base_id {
            (BTreeMap::new(), base_tree)
        } else {
            let latest = self
                .revision_of(&tenant, &record.source.id, &latest_id)
                .await?;
            let latest_tree = self
                .whole_tree(self.revision_tree(&tenant, record, &latest))
                .await?;
            (diff(&base_tree, &latest_tree), latest_tree)
        };
        let conflicts: Vec<&SessionPath> = ours
            .iter()
            .filter(|(p, mine)| {
                theirs.get(*p).is_some_and(|other| match (mine, other) {
                    (Some(a), Some(b)) => !same(a, b),
                    (None, None) => false,
                    _ => true,
                })
            })
            .map(|(p, _)| p)
            .collect();
        if !conflicts.is_empty() {
            let shown: Vec<&str> = conflicts
                .iter()
                .take(SHOWN_CONFLICTS)
                .map(|p| p.as_str())
                .collect();
            let more = conflicts.len().saturating_sub(SHOWN_CONFLICTS);
            let mut event = self.event(ctx, "SESSION_CONFLICT", session.generation);
            event.related_id = Some(latest_id.clone());
            if let Ok(to) = session.status.apply(Transition::DetectConflict) {
                self.inner
                    .meta
                    .set_status(&tenant, &session.id, session.status, to, event, None)
                    .await?;
                self.notify(&session.id);
            }
            return Err(Error::new(
                aether_domain::Code::Aborted,
                format!(
                    "session {session_id} conflicts with revision {latest_id} of source {} (changed since its base {base_id}) at {} path(s): {}{}",
                    record.source.id,
                    conflicts.len(),
                    shown.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        // The holder holds the latest revision: apply our changes that it does not have yet.
        let mut planned = Vec::new();
        let mut removed: BTreeSet<SessionPath> = BTreeSet::new();
        for (path, change) in &ours {
            if theirs.get(path).is_some_and(|t| t == change) {
                continue;
            }
            if removed.iter().any(|r| r.is_ancestor_of(path)) {
                continue;
            }
            let present = latest_tree.get(path);
            match change {
                None => match present {
                    Some(e) if e.kind == EntryKind::Directory => {
                        removed.insert(path.clone());
                        planned.push(Planned::Op(Op::Rmdir {
                            path: path.clone(),
                            recursive: true,
                        }));
                    }
                    Some(_) => planned.push(Planned::Op(Op::Unlink {
                        path: path.clone(),
                        expected_hash: None,
                    })),
                    None => {}
                },
                Some(e) => {
                    if present.is_some_and(|p| p.kind != e.kind) {
                        planned.push(Planned::Op(match present.map(|p| p.kind) {
                            Some(EntryKind::Directory) => Op::Rmdir {
                                path: path.clone(),
                                recursive: true,
                            },
                            _ => Op::Unlink {
                                path: path.clone(),
                                expected_hash: None,
                            },
                        }));
                    }
                    let replacing = present.is_some_and(|p| p.kind == e.kind);
                    match e.kind {
                        EntryKind::Directory if replacing => {
                            planned.push(Planned::Op(Op::SetAttributes {
                                path: path.clone(),
                                change: aether_domain::tree::AttrChange {
                                    mode: Some(e.mode),
                                    ..Default::default()
                                },
                            }))
                        }
                        EntryKind::Directory => planned.push(Planned::Op(Op::Mkdir {
                            path: path.clone(),
                            mode: Some(e.mode),
                            parents: true,
                        })),
                        EntryKind::File => planned.push(Planned::Op(Op::WriteBlob {
                            path: path.clone(),
                            hash: e.content_hash.clone().unwrap_or_default(),
                            size: e.size,
                            mode: Some(e.mode),
                            parents: true,
                            expected_hash: None,
                        })),
                        EntryKind::Symlink => {
                            if replacing {
                                planned.push(Planned::Op(Op::Unlink {
                                    path: path.clone(),
                                    expected_hash: None,
                                }));
                            }
                            planned.push(Planned::Op(Op::Symlink {
                                path: path.clone(),
                                target: e.target.clone().unwrap_or_default(),
                            }));
                        }
                        kind => {
                            if replacing {
                                planned.push(Planned::Op(Op::Unlink {
                                    path: path.clone(),
                                    expected_hash: None,
                                }));
                            }
                            planned.push(Planned::Op(Op::Mknod {
                                path: path.clone(),
                                kind,
                                mode: e.mode,
                                rdev: e.rdev,
                            }));
                        }
                    }
                }
            }
        }
        let files = ours_tree
            .values()
            .filter(|e| e.kind == EntryKind::File)
            .count() as u64;
        let bytes = ours_tree
            .values()
            .filter(|e| e.kind == EntryKind::File)
            .map(|e| e.size)
            .sum();
        job.files_processed = ours.len() as u64;
        let made = Made {
            by: "PROMOTION",
            session: Some(&session.id),
            files,
            bytes,
        };
        let revision = self
            .new_revision(&tenant, &record.source.id, planned, made)
            .await?;
        let mut event = self.event(ctx, "SESSION_PROMOTED", session.generation);
        event.related_id = Some(revision.clone());
        self.inner.meta.append_event(&session.id, event).await?;
        self.notify(&session.id);
        Ok(revision)
    }
}

fn check_source_id(id: &str) -> Result<()> {
    let ok = id.strip_prefix("src_").is_some_and(|rest| {
        !rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "source id {id:?} is malformed; expected src_ followed by letters and digits"
        )))
    }
}

impl<M, B, E> SourcesApi for Service<M, B, E>
where
    M: MetadataStore + SourceStore + ReviewStore,
    B: BlobStore,
    E: Environment,
{
    async fn create_source(&self, ctx: &Ctx, req: CreateSourceRequest) -> Result<Source> {
        ctx.principal.require(Scope::SourceWrite)?;
        let name = req.display_name.trim();
        if name.is_empty() || name.chars().count() > 256 || name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "displayName must be 1-256 characters without control characters",
            ));
        }
        check_origin(&req.kind, &req.origin)?;
        plan::validate_tags(&req.labels)
            .map_err(|e| Error::invalid(e.message.replace("tag", "label")))?;
        let now = self.inner.env.now();
        let tenant = ctx.principal.tenant.clone();
        let source = Source {
            id: format!("src_{}", self.inner.env.id_suffix()),
            tenant_id: tenant.as_str().to_owned(),
            display_name: name.to_owned(),
            kind: req.kind,
            origin: req.origin,
            labels: req.labels,
            status: CREATING.to_owned(),
            latest_revision_id: None,
            revision_count: 0,
            created_at: now,
            updated_at: now,
        };
        let holder = SessionRecord {
            id: SessionId::parse(&format!("{HOLDER_PREFIX}{}", self.inner.env.id_suffix()))?,
            tenant: tenant.clone(),
            base_fingerprint: crate::fingerprint(&["source", &source.id]),
            source_ref: None,
            status: SessionStatus::Active,
            tags: BTreeMap::new(),
            generation: 0,
            created_at: now,
            last_activity_at: now,
            approval_policy: Vec::new(),
        };
        let record = SourceRecord {
            source: source.clone(),
            holder: holder.id.clone(),
        };
        self.inner
            .meta
            .insert_source(&record, &holder, &Entry::root(now))
            .await?;
        Ok(source)
    }

    async fn list_sources(&self, ctx: &Ctx, req: ListSourcesRequest) -> Result<Page<Source>> {
        ctx.principal.require(Scope::SourceRead)?;
        let limit = req.page.size()?;
        let after = req
            .page
            .page_token
            .as_ref()
            .map(|t| plan::decode_token("sources", t))
            .transpose()?;
        let mut items: Vec<Source> = self
            .inner
            .meta
            .list_sources(&ctx.principal.tenant, after.as_deref(), limit + 1)
            .await?
            .into_iter()
            .map(|r| r.source)
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        let next_page_token = more
            .then(|| items.last().map(|s| plan::encode_token("sources", &s.id)))
            .flatten();
        Ok(Page {
            items,
            next_page_token,
        })
    }

    async fn get_source(&self, ctx: &Ctx, source_id: &str) -> Result<Source> {
        Ok(self
            .source_of(ctx, Scope::SourceRead, source_id)
            .await?
            .source)
    }

    async fn upload_archive(&self, ctx: &Ctx, source_id: &str, archive: FileBody) -> Result<Job> {
        let record = self.source_of(ctx, Scope::SourceImport, source_id).await?;
        if record.source.kind != "SOURCE_KIND_ARCHIVE" {
            return Err(Error::precondition(format!(
                "source {source_id} is a {}; only SOURCE_KIND_ARCHIVE sources take an uploaded archive",
                record.source.kind
            )));
        }
        let hash = match archive {
            FileBody::Bytes(b) => self.inner.blobs.put(b).await?,
            FileBody::Stream { chunks, .. } => self.inner.blobs.put_stream(chunks).await?.0,
        };
        let kind = if record.source.revision_count == 0 {
            "IMPORT"
        } else {
            "REFRESH"
        };
        let job = self.new_job(ctx, source_id, kind);
        let tenant = ctx.principal.tenant.clone();
        self.launch(&tenant, record, job, Feed::Archive(hash)).await
    }

    async fn start_import(&self, ctx: &Ctx, source_id: &str) -> Result<Job> {
        let record = self.source_of(ctx, Scope::SourceImport, source_id).await?;
        let origin = host_origin(&record.source)?;
        if record.source.revision_count > 0 {
            return Err(Error::precondition(format!(
                "source {source_id} was already imported; use refresh for a new revision"
            )));
        }
        let job = self.new_job(ctx, source_id, "IMPORT");
        let tenant = ctx.principal.tenant.clone();
        self.launch(&tenant, record, job, Feed::Host(origin)).await
    }

    async fn refresh_source(&self, ctx: &Ctx, source_id: &str) -> Result<Job> {
        let record = self.source_of(ctx, Scope::SourceImport, source_id).await?;
        let origin = host_origin(&record.source)?;
        let job = self.new_job(ctx, source_id, "REFRESH");
        let tenant = ctx.principal.tenant.clone();
        self.launch(&tenant, record, job, Feed::Host(origin)).await
    }

    async fn promote_session(
        &self,
        ctx: &Ctx,
        source_id: &str,
        req: PromoteSessionRequest,
    ) -> Result<Job> {
        let record = self.source_of(ctx, Scope::SourceWrite, source_id).await?;
        let tenant = ctx.principal.tenant.clone();
        let mut job = self.new_job(ctx, source_id, "PROMOTION");
        job.state = RUNNING.to_owned();
        self.inner.meta.put_job(&tenant, &job).await?;
        let result = self.promote(ctx, &record, &req.session_id, &mut job).await;
        job.updated_at = self.inner.env.now();
        match &result {
            Ok(revision) => {
                job.state = SUCCEEDED.to_owned();
                job.revision_id = Some(revision.clone());
            }
            Err(e) => {
                job.state = JOB_FAILED.to_owned();
                job.error_code = Some(e.code.as_str().to_owned());
                job.error_message = Some(e.message.clone());
            }
        }
        self.inner.meta.put_job(&tenant, &job).await?;
        result.map(|_| job)
    }

    async fn get_job(&self, ctx: &Ctx, source_id: &str, job_id: &str) -> Result<Job> {
        self.source_of(ctx, Scope::SourceRead, source_id).await?;
        self.inner
            .meta
            .job(&ctx.principal.tenant, source_id, job_id)
            .await?
            .ok_or_else(|| job_missing(job_id))
    }
}
