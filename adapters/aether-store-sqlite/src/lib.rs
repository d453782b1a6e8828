//! SQLite (WAL) metadata store and file-system CAS blob store (adapter layer): implements the
//! `MetadataStore`, `KnowledgeStore`, `ReviewStore` and `BlobStore` ports for the embedded default deployment.

mod blobs;
mod bus;
mod cache;
mod chunked;
mod db;
mod insight;
mod kv;
mod meta;
mod midstate;
mod review;
mod rows;
mod schema;
mod secrets;
mod small;
mod sources;

pub use blobs::FileBlobStore;
pub use meta::SqliteMetadataStore;

use aether_domain::Error;

/// Maps a SQLite failure to the API's error: the caller learns the store failed, not why in SQL.
fn backend(context: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("metadata store failed to {context}: {e}"))
}
