//! Adapts the metadata store to the domain's `TreeRead`, so `Txn` plans against stored trees.

use aether_domain::tree::TreeRead;
use aether_domain::{Entry, Result, SessionPath};
use aether_ports::store::{ListQuery, MetadataStore, TreeRef};

pub(crate) struct StoreReader<'a, M> {
    pub(crate) meta: &'a M,
    pub(crate) tree: TreeRef,
}

const LIST_CHUNK: usize = 4096;

impl<M: MetadataStore> StoreReader<'_, M> {
    async fn all(&self, dir: &SessionPath, recursive: bool) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let query = ListQuery {
                dir: dir.clone(),
                recursive,
                after,
                limit: LIST_CHUNK,
            };
            let (page, more) = self.meta.list(&self.tree, &query).await?;
            after = page.last().map(|e| e.path.clone());
            out.extend(page);
            if !more {
                return Ok(out);
            }
        }
    }
}

impl<M: MetadataStore> TreeRead for StoreReader<'_, M> {
    async fn entry(&self, path: &SessionPath) -> Result<Option<Entry>> {
        self.meta.entry(&self.tree, path).await
    }

    async fn children(&self, dir: &SessionPath) -> Result<Vec<Entry>> {
        self.all(dir, false).await
    }

    async fn descendants(&self, dir: &SessionPath) -> Result<Vec<Entry>> {
        self.all(dir, true).await
    }

    async fn by_inode(&self, inode: u64) -> Result<Vec<Entry>> {
        self.meta.by_inode(&self.tree, inode).await
    }
}
