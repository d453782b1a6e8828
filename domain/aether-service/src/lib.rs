//! The afs-server core (domain layer, use cases): implements the session API over the metadata
//! store, blob store and environment ports. No I/O of its own, no spawning, no clock reads.

mod archive;
mod bus;
mod events;
mod filesystem;
mod gc;
mod insight;
mod knowledge;
mod mutate;
mod patch;
mod reader;
mod review;
mod secrets;
mod sessions;
mod sources;

pub use gc::GcReport;
pub use insight::DeploymentGauges;

use std::sync::Arc;

use tokio::sync::{Mutex, broadcast};

use aether_domain::{Error, Principal, Result, Scope, SessionId, TenantId};
use aether_ports::store::{BlobStore, Environment, MetadataStore, NewEvent, SessionRecord};
use aether_ports::{Ctx, Outcome};

/// Limits the service enforces regardless of transport.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest file the service stores: a patch that would produce a larger one is refused here
    /// (it is applied in memory), a larger whole-file body by the transport's body limit (the
    /// server sets both from one setting). Sessions announce it in their capabilities.
    pub max_file_bytes: u64,
    /// Largest knowledge-cache value.
    pub max_cache_value_bytes: usize,
    /// Most keys one knowledge-cache batch may name.
    pub max_cache_batch: usize,
    /// Largest bus payload.
    pub max_bus_payload_bytes: usize,
    /// Bus messages retained per session for replay.
    pub bus_retention: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 1 << 30,
            max_cache_value_bytes: 1 << 20,
            max_cache_batch: 1000,
            max_bus_payload_bytes: 256 << 10,
            bus_retention: 1000,
        }
    }
}

/// The service: cheap to clone, shared by every request.
pub struct Service<M, B, E> {
    inner: Arc<Inner<M, B, E>>,
}

impl<M, B, E> Clone for Service<M, B, E> {
    fn clone(&self) -> Self {
        Service {
            inner: self.inner.clone(),
        }
    }
}

impl<M, B, E> Service<M, B, E> {
    /// Whether this is the only handle left: when it is dropped, the stores close.
    pub fn is_last_handle(&self) -> bool {
        Arc::strong_count(&self.inner) == 1
    }
}

struct Inner<M, B, E> {
    meta: M,
    blobs: B,
    env: E,
    limits: Limits,
    /// Wakes changefeed followers; carries the session whose log grew.
    appended: broadcast::Sender<SessionId>,
    /// Serialises mutations per session (sharded) so concurrent writers queue instead of retrying.
    write_locks: Vec<Arc<Mutex<()>>>,
    /// Mutations waiting for their shard's lock; its holder applies them together.
    write_queues: Vec<mutate::WriteQueue>,
    /// Live bus subscribers, per session.
    fanout: bus::Fanout,
    /// Bytes read per session, not yet flushed to the store.
    reads: insight::ReadCounters,
    /// Runs import jobs in the background; without one they run within the request.
    spawner: Option<Arc<dyn aether_ports::store::Spawner>>,
    /// Reads host paths, git repositories and bundles; without one only archives import.
    importer: Option<Arc<dyn aether_ports::store::Importer>>,
    /// Seals secret values; without one the secret routes answer that none is configured.
    sealer: Option<Arc<dyn aether_ports::store::SecretSealer>>,
}

const WRITE_LOCK_SHARDS: usize = 64;

impl<M: MetadataStore, B: BlobStore, E: Environment> Service<M, B, E> {
    pub fn new(meta: M, blobs: B, env: E, limits: Limits) -> Self {
        let (appended, _) = broadcast::channel(1024);
        let write_locks = (0..WRITE_LOCK_SHARDS)
            .map(|_| Arc::new(Mutex::new(())))
            .collect();
        let write_queues = (0..WRITE_LOCK_SHARDS).map(|_| Default::default()).collect();
        Service {
            inner: Arc::new(Inner {
                meta,
                blobs,
                env,
                limits,
                appended,
                write_locks,
                write_queues,
                fanout: bus::Fanout::default(),
                reads: insight::ReadCounters::default(),
                spawner: None,
                importer: None,
                sealer: None,
            }),
        }
    }

    /// Lets imports run in the background and read the host (before the service is shared).
    pub fn with_jobs(
        mut self,
        spawner: Option<Arc<dyn aether_ports::store::Spawner>>,
        importer: Option<Arc<dyn aether_ports::store::Importer>>,
    ) -> Self {
        let inner =
            Arc::get_mut(&mut self.inner).expect("a service is configured before it is cloned");
        inner.spawner = spawner;
        inner.importer = importer;
        self
    }

    /// Lets the service keep secrets, sealed by `sealer` (before the service is shared).
    pub fn with_secrets(mut self, sealer: Arc<dyn aether_ports::store::SecretSealer>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("a service is configured before it is cloned")
            .sealer = Some(sealer);
        self
    }

    /// Loads a session of the caller's tenant; other tenants' sessions are indistinguishable
    /// from missing ones.
    async fn load(&self, principal: &Principal, session_id: &str) -> Result<SessionRecord> {
        let id = SessionId::parse(session_id)?;
        // A source's hidden tree is not a session anyone may name.
        if aether_ports::store::is_holder(session_id) {
            return Err(Error::not_found(format!("session {session_id} not found")));
        }
        self.inner
            .meta
            .session(&principal.tenant, &id)
            .await?
            .ok_or_else(|| Error::not_found(format!("session {session_id} not found")))
    }

    async fn authorize(&self, ctx: &Ctx, scope: Scope, session_id: &str) -> Result<SessionRecord> {
        ctx.principal.require(scope)?;
        self.load(&ctx.principal, session_id).await
    }

    fn event(&self, ctx: &Ctx, kind: &str, generation: u64) -> NewEvent {
        NewEvent {
            kind: kind.to_owned(),
            path: None,
            to_path: None,
            related_id: None,
            principal: ctx.principal.name.clone(),
            generation,
            time: self.inner.env.now(),
        }
    }

    fn idempotency(
        &self,
        ctx: &Ctx,
        outcome: Outcome,
    ) -> Option<aether_ports::store::IdempotencyRecord> {
        ctx.idempotency_key
            .as_ref()
            .map(|key| aether_ports::store::IdempotencyRecord {
                key: key.clone(),
                outcome,
                time: self.inner.env.now(),
            })
    }

    /// A previously recorded outcome for this key, if the request is a retry.
    async fn replay(&self, ctx: &Ctx, session_scope: &str) -> Result<Option<Outcome>> {
        match &ctx.idempotency_key {
            Some(key) => {
                validate_idempotency_key(key)?;
                self.inner
                    .meta
                    .idempotent_outcome(&ctx.principal.tenant, session_scope, key)
                    .await
            }
            None => Ok(None),
        }
    }

    fn notify(&self, session: &SessionId) {
        // No receiver just means nobody follows the changefeed right now.
        let _ = self.inner.appended.send(session.clone());
    }
}

pub fn validate_idempotency_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "Idempotency-Key must be 1-255 visible ASCII characters",
        ));
    }
    Ok(())
}

/// 40 hex characters identifying a session's base.
fn fingerprint(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())[..40].to_owned()
}

fn tenant_of(ctx: &Ctx) -> &TenantId {
    &ctx.principal.tenant
}

/// Turns a reply remembered as JSON (`Outcome::Value`) back into the route's type.
pub(crate) fn replayed_value<T: serde::de::DeserializeOwned>(outcome: Outcome) -> Result<T> {
    match outcome {
        Outcome::Value(v) => serde_json::from_value(v).map_err(|_| reused_key()),
        _ => Err(reused_key()),
    }
}

pub(crate) fn reused_key() -> Error {
    Error::invalid("Idempotency-Key was already used for a different kind of request")
}

/// Unwraps a replayed outcome of the expected shape; another shape means the key was reused for
/// a different request, which the caller must hear about.
macro_rules! replayed {
    ($outcome:expr, $variant:ident) => {
        match $outcome {
            aether_ports::Outcome::$variant(v) => Ok(v),
            _ => Err(aether_domain::Error::invalid(
                "Idempotency-Key was already used for a different kind of request",
            )),
        }
    };
}
pub(crate) use replayed;

impl<M: MetadataStore, B: BlobStore, E: Environment> aether_ports::Readiness for Service<M, B, E> {
    /// Ready when the metadata store answers.
    async fn ready(&self) -> Result<()> {
        self.inner.meta.ping().await
    }
}
