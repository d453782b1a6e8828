//! The AetherFS API as traits (ports layer): request/response types with their JSON shape, the
//! session API traits implemented by the service, the HTTP client and the fake, and the store and
//! environment ports the service core is generic over, and the mount's ports (the `Vfs` a
//! kernel bridge drives, the local cache and journal).

pub mod api;
pub mod body;
pub mod bus;
pub mod insight;
pub mod knowledge;
pub mod local_cache;
pub mod model;
pub mod plan;
pub mod review;
pub mod secrets;
pub mod serde_helpers;
pub mod sources;
pub mod store;
pub mod vfs;

pub use aether_domain::{Code, Error as ApiError, Principal, Reason, Result};
pub use api::{
    AetherApi, BusApi, ContentApi, Ctx, EventStream, EventsApi, FilesystemApi, InsightApi,
    KnowledgeApi, Readiness, ReviewApi, SecretsApi, SessionApi, SessionsApi, SourcesApi,
};
pub use body::{ByteStream, FileBody};
pub use bus::*;
pub use insight::*;
pub use knowledge::*;
pub use model::*;
pub use review::*;
pub use secrets::*;
pub use sources::*;
pub use store::Outcome;
