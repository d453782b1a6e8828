//! In-memory implementations of every port plus fault injection (adapter layer), for fast,
//! deterministic tests: the fake session API is the service core over in-memory stores.

mod env;
mod faulty;
mod knowledge;
mod local;
mod memory;
mod review;
mod sources;

pub use aether_service::Limits;
pub use env::{FakeEnvironment, FakeSealer, FakeTime};
pub use faulty::{Fault, FaultPlan, Faulty};
pub use local::{ManualClock, MemoryCache};
pub use memory::{MemoryBlobStore, MemoryMetadataStore};

/// The in-memory session API: the service's rules over in-memory stores.
pub type FakeApi = aether_service::Service<MemoryMetadataStore, MemoryBlobStore, FakeEnvironment>;

/// A fresh, empty in-memory session API.
pub fn fake_api() -> FakeApi {
    fake_api_with_limits(aether_service::Limits::default())
}

/// A fresh in-memory session API enforcing `limits` (a small file-size limit, say).
pub fn fake_api_with_limits(limits: Limits) -> FakeApi {
    aether_service::Service::new(
        MemoryMetadataStore::default(),
        MemoryBlobStore::default(),
        FakeEnvironment::default(),
        limits,
    )
    .with_secrets(std::sync::Arc::new(FakeSealer))
}

/// The in-memory session API over another blob store: a wrapper that holds or fails writes,
/// say, to show what the service does meanwhile.
pub fn fake_api_with_blobs<B: aether_ports::store::BlobStore>(
    blobs: B,
) -> aether_service::Service<MemoryMetadataStore, B, FakeEnvironment> {
    aether_service::Service::new(
        MemoryMetadataStore::default(),
        blobs,
        FakeEnvironment::default(),
        Limits::default(),
    )
}

/// A fresh in-memory session API whose clock the returned `FakeTime` moves forward.
pub fn fake_api_with_time() -> (FakeApi, FakeTime) {
    let time = FakeTime::default();
    let api = aether_service::Service::new(
        MemoryMetadataStore::default(),
        MemoryBlobStore::default(),
        FakeEnvironment::with_time(time.clone()),
        aether_service::Limits::default(),
    )
    .with_secrets(std::sync::Arc::new(FakeSealer));
    (api, time)
}
