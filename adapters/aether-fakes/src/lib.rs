//! In-memory implementations of every port plus fault injection (adapter layer), for fast,
//! deterministic tests: the fake session API is the service core over in-memory stores.

mod env;
mod faulty;
mod local;
mod memory;

pub use env::FakeEnvironment;
pub use faulty::{Fault, FaultPlan, Faulty};
pub use local::{ManualClock, MemoryCache};
pub use memory::{MemoryBlobStore, MemoryMetadataStore};

/// The in-memory session API: the service's rules over in-memory stores.
pub type FakeApi = aether_service::Service<MemoryMetadataStore, MemoryBlobStore, FakeEnvironment>;

/// A fresh, empty in-memory session API.
pub fn fake_api() -> FakeApi {
    aether_service::Service::new(
        MemoryMetadataStore::default(),
        MemoryBlobStore::default(),
        FakeEnvironment::default(),
        aether_service::Limits::default(),
    )
}
