//! Filesystem and content use cases: manifest, namespace mutations, xattrs, reads and writes.

use aether_domain::tree::Op;
use aether_domain::{EntryKind, Error, Result, Scope, SessionPath};
use aether_ports::plan::{self, Planned};
use aether_ports::store::{BlobStore, Environment, ListQuery, MetadataStore, TreeRef};
use aether_ports::*;

use crate::mutate::Applied;
use crate::{Service, replayed};

fn tree_of(rec: &store::SessionRecord) -> TreeRef {
    TreeRef::Session {
        tenant: rec.tenant.clone(),
        session: rec.id.clone(),
    }
}

fn first_entry(a: &Applied) -> Outcome {
    match a.entries.first().cloned().flatten() {
        Some(e) => Outcome::Entry(Entry::from(e)),
        None => Outcome::Done,
    }
}

impl<M: MetadataStore, B: BlobStore, E: Environment> Service<M, B, E> {
    /// One operation that answers the entry it produced.
    async fn mutate_entry(&self, ctx: &Ctx, session_id: &str, planned: Planned) -> Result<Entry> {
        if let Some(o) = self.replay(ctx, session_id).await? {
            return replayed!(o, Entry);
        }
        let applied = self
            .mutate(ctx, session_id, vec![planned], first_entry)
            .await?;
        applied
            .entries
            .into_iter()
            .next()
            .flatten()
            .map(Entry::from)
            .ok_or_else(|| Error::internal("operation produced no entry"))
    }

    /// One operation that answers nothing.
    async fn mutate_unit(&self, ctx: &Ctx, session_id: &str, planned: Planned) -> Result<()> {
        if let Some(o) = self.replay(ctx, session_id).await? {
            return match o {
                Outcome::Done => Ok(()),
                _ => Err(Error::invalid(
                    "Idempotency-Key was already used for a different kind of request",
                )),
            };
        }
        self.mutate(ctx, session_id, vec![planned], |_| Outcome::Done)
            .await
            .map(|_| ())
    }

    async fn read_entry(
        &self,
        ctx: &Ctx,
        session_id: &str,
        scope: Scope,
        path: &str,
    ) -> Result<(store::SessionRecord, aether_domain::Entry)> {
        let rec = self.authorize(ctx, scope, session_id).await?;
        let path = plan::path(path)?;
        let entry = self
            .inner
            .meta
            .entry(&tree_of(&rec), &path)
            .await?
            .ok_or_else(|| Error::no_such_path(path.as_str()))?;
        Ok((rec, entry))
    }
}

impl<M: MetadataStore, B: BlobStore, E: Environment> FilesystemApi for Service<M, B, E> {
    async fn manifest(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ManifestRequest,
    ) -> Result<Manifest> {
        let rec = self
            .authorize(ctx, Scope::FilesystemRead, session_id)
            .await?;
        let limit = req.page.size()?;
        let dir = plan::path(req.path_prefix.as_deref().unwrap_or("/"))?;
        let recursive = req.recursive.unwrap_or(true);
        let extents = req.include_cas_extents.unwrap_or(false);
        let view = |e: &aether_domain::Entry| {
            let e = Entry::from(e);
            if extents { e.with_cas_extents() } else { e }
        };
        let tree = tree_of(&rec);
        let after = match &req.page.page_token {
            Some(t) => Some(SessionPath::parse(&plan::decode_token("manifest", t)?)?),
            None => None,
        };
        let mut items = Vec::new();
        if after.is_none() {
            let top = self
                .inner
                .meta
                .entry(&tree, &dir)
                .await?
                .ok_or_else(|| Error::no_such_path(dir.as_str()))?;
            let is_dir = top.is_dir();
            items.push(view(&top));
            if !is_dir {
                return Ok(Manifest {
                    entries: Page {
                        items,
                        next_page_token: None,
                    },
                    generation: rec.generation,
                });
            }
        }
        let remaining = limit - items.len();
        let query = ListQuery {
            dir,
            recursive,
            after,
            limit: remaining.max(1),
        };
        let (below, more) = self.inner.meta.list(&tree, &query).await?;
        // A one-entry first page is full with the entry itself; the probe only tells if more follow.
        let more = if remaining == 0 {
            !below.is_empty()
        } else {
            more
        };
        items.extend(below.iter().take(remaining).map(view));
        let next_page_token = more.then(|| {
            plan::encode_token(
                "manifest",
                &items.last().map_or(String::new(), |e| e.path.clone()),
            )
        });
        Ok(Manifest {
            entries: Page {
                items,
                next_page_token,
            },
            generation: rec.generation,
        })
    }

    async fn mkdir(&self, ctx: &Ctx, session_id: &str, req: MkdirRequest) -> Result<Entry> {
        self.mutate_entry(ctx, session_id, Planned::Op(req.try_into()?))
            .await
    }

    async fn rmdir(&self, ctx: &Ctx, session_id: &str, req: RmdirRequest) -> Result<()> {
        self.mutate_unit(ctx, session_id, Planned::Op(req.try_into()?))
            .await
    }

    async fn delete_file(&self, ctx: &Ctx, session_id: &str, req: DeleteFileRequest) -> Result<()> {
        self.mutate_unit(ctx, session_id, Planned::Op(req.try_into()?))
            .await
    }

    async fn rename(&self, ctx: &Ctx, session_id: &str, req: RenameRequest) -> Result<()> {
        self.mutate_unit(ctx, session_id, Planned::Op(req.try_into()?))
            .await
    }

    async fn link(&self, ctx: &Ctx, session_id: &str, req: LinkRequest) -> Result<Entry> {
        self.mutate_entry(ctx, session_id, Planned::Op(req.try_into()?))
            .await
    }

    async fn unlink(&self, ctx: &Ctx, session_id: &str, req: PathRequest) -> Result<()> {
        let op = Op::Unlink {
            path: plan::path(&req.path)?,
            expected_hash: None,
        };
        self.mutate_unit(ctx, session_id, Planned::Op(op)).await
    }

    async fn symlink(&self, ctx: &Ctx, session_id: &str, req: SymlinkRequest) -> Result<Entry> {
        self.mutate_entry(ctx, session_id, Planned::Op(req.try_into()?))
            .await
    }

    async fn read_symlink(&self, ctx: &Ctx, session_id: &str, path: &str) -> Result<SymlinkTarget> {
        let (_, entry) = self
            .read_entry(ctx, session_id, Scope::FilesystemRead, path)
            .await?;
        match (entry.kind, entry.target) {
            (EntryKind::Symlink, Some(target)) => Ok(SymlinkTarget { target }),
            _ => Err(Error::invalid(format!("{path} is not a symlink"))),
        }
    }

    async fn set_xattr(&self, ctx: &Ctx, session_id: &str, req: SetXattrRequest) -> Result<()> {
        self.mutate_unit(ctx, session_id, Planned::Op(req.try_into()?))
            .await
    }

    async fn get_xattr(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: XattrRequest,
    ) -> Result<XattrValue> {
        aether_domain::tree::validate_xattr_name(&req.name)?;
        let (_, entry) = self
            .read_entry(ctx, session_id, Scope::FilesystemMetadata, &req.path)
            .await?;
        entry
            .xattrs
            .get(&req.name)
            .map(|v| XattrValue { value: v.clone() })
            .ok_or_else(|| aether_domain::tree::no_such_xattr(&entry.path, &req.name))
    }

    async fn list_xattrs(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: PathRequest,
    ) -> Result<XattrNames> {
        let (_, entry) = self
            .read_entry(ctx, session_id, Scope::FilesystemMetadata, &req.path)
            .await?;
        Ok(XattrNames {
            names: entry.xattrs.keys().cloned().collect(),
        })
    }

    async fn remove_xattr(&self, ctx: &Ctx, session_id: &str, req: XattrRequest) -> Result<()> {
        self.mutate_unit(ctx, session_id, Planned::Op(req.try_into()?))
            .await
    }

    async fn set_attributes(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: SetAttributesRequest,
    ) -> Result<Entry> {
        self.mutate_entry(ctx, session_id, Planned::Op(req.try_into()?))
            .await
    }

    async fn mknod(&self, ctx: &Ctx, session_id: &str, req: MknodRequest) -> Result<Entry> {
        self.mutate_entry(ctx, session_id, Planned::Op(req.try_into()?))
            .await
    }

    async fn batch(&self, ctx: &Ctx, session_id: &str, req: BatchRequest) -> Result<BatchResponse> {
        if let Some(o) = self.replay(ctx, session_id).await? {
            return replayed!(o, Batch);
        }
        let planned = plan::plan_batch(req)?;
        let to_response = |a: &Applied| -> BatchResponse {
            BatchResponse {
                results: a
                    .entries
                    .iter()
                    .map(|e| BatchResult {
                        entry: e.as_ref().map(Entry::from),
                    })
                    .collect(),
                generation: a.generation,
            }
        };
        let applied = self
            .mutate(ctx, session_id, planned, move |a| {
                Outcome::Batch(to_response(a))
            })
            .await?;
        Ok(to_response(&applied))
    }
}

impl<M: MetadataStore, B: BlobStore, E: Environment> Service<M, B, E> {
    /// The entry a read of `req` is served from, and its byte range resolved against the size.
    async fn readable(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: &ReadFileRequest,
    ) -> Result<(
        store::SessionRecord,
        aether_domain::Entry,
        Option<(u64, u64)>,
    )> {
        let (rec, entry) = self
            .read_entry(ctx, session_id, Scope::FilesystemRead, &req.path)
            .await?;
        match entry.kind {
            EntryKind::File => {}
            EntryKind::Directory => return Err(Error::is_a_directory(&req.path)),
            k => {
                return Err(Error::precondition(format!(
                    "{} is a {}, not a regular file",
                    req.path,
                    k.as_str()
                )));
            }
        }
        let range = match req.range {
            Some(r) => Some(
                r.resolve(entry.size)
                    .ok_or_else(|| Error::range_not_satisfiable(&req.path, entry.size))?,
            ),
            None => None,
        };
        Ok((rec, entry, range))
    }
}

impl<M: MetadataStore, B: BlobStore, E: Environment> ContentApi for Service<M, B, E> {
    async fn read_file(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ReadFileRequest,
    ) -> Result<FileContent> {
        let (rec, entry, range) = self.readable(ctx, session_id, &req).await?;
        let data = match &entry.content_hash {
            Some(h) => self.inner.blobs.get(h, range).await?,
            None => bytes::Bytes::new(),
        };
        self.count_read(&rec.id, data.len() as u64);
        Ok(FileContent {
            entry: Entry::from(entry),
            data,
            range,
        })
    }

    async fn read_file_chunks(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: ReadFileRequest,
    ) -> Result<FileChunks> {
        let (rec, entry, range) = self.readable(ctx, session_id, &req).await?;
        let chunks = match &entry.content_hash {
            Some(h) => self.inner.blobs.get_chunks(h, range).await?,
            None => Box::pin(futures::stream::empty()),
        };
        // Counted when promised: a reader that hangs up early still asked for all of it.
        let (start, end) = range.unwrap_or((0, entry.size));
        self.count_read(&rec.id, end - start);
        Ok(FileChunks {
            entry: Entry::from(entry),
            range,
            chunks,
        })
    }

    async fn write_file(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: WriteFileRequest,
    ) -> Result<Entry> {
        self.mutate_entry(ctx, session_id, req.try_into()?).await
    }

    async fn patch_segments(
        &self,
        ctx: &Ctx,
        session_id: &str,
        req: PatchSegmentsRequest,
    ) -> Result<Entry> {
        self.mutate_entry(ctx, session_id, req.try_into()?).await
    }
}
