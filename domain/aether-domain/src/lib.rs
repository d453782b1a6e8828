//! Pure model of AetherFS (domain layer): ids, paths, entries, session state machine, copy-on-write
//! overlay resolution and tree-mutation rules. No I/O, no clock reads, no async runtime.

pub mod backpressure;
pub mod bus;
pub mod cache_policy;
pub mod error;
pub mod ids;
pub mod knowledge;
pub mod mount_options;
pub mod overlay;
pub mod path;
pub mod review;
pub mod session;
pub mod splice;
pub mod time;
pub mod tree;

pub use error::{Code, Error, Reason, Result};
pub use ids::{
    AnnotationId, ApprovalId, CheckpointId, CommitId, Principal, Scope, SessionId, TenantId,
};
pub use path::SessionPath;
pub use session::{Action, SessionStatus};
pub use time::Timestamp;
pub use tree::{Entry, EntryKind};
