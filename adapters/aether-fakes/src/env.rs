//! A deterministic environment: a clock that ticks one microsecond per reading (plus whatever a
//! test adds through its `FakeTime`) and ids from a counter.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use aether_domain::Timestamp;
use aether_ports::store::{Environment, time_ordered_suffix};

/// Moves a `FakeEnvironment`'s clock forward, for tests of expiry.
#[derive(Clone, Default)]
pub struct FakeTime(Arc<AtomicI64>);

impl FakeTime {
    pub fn advance(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }
}

pub struct FakeEnvironment {
    start: Timestamp,
    ticks: AtomicU64,
    skip: FakeTime,
}

impl Default for FakeEnvironment {
    fn default() -> Self {
        Self::with_time(FakeTime::default())
    }
}

impl FakeEnvironment {
    /// An environment whose clock `time` can move forward.
    pub fn with_time(time: FakeTime) -> Self {
        // 2026-01-01T00:00:00Z
        FakeEnvironment {
            start: Timestamp(1_767_225_600_000_000_000),
            ticks: AtomicU64::new(0),
            skip: time,
        }
    }
}

impl Environment for FakeEnvironment {
    fn now(&self) -> Timestamp {
        let t = self.ticks.fetch_add(1, Ordering::Relaxed);
        Timestamp(self.start.nanos() + (t as i64) * 1_000 + self.skip.0.load(Ordering::Relaxed))
    }

    fn id_suffix(&self) -> String {
        let n = self.ticks.fetch_add(1, Ordering::Relaxed);
        time_ordered_suffix(self.start, n)
    }
}

/// A stand-in for the real sealer in in-memory tests: reversible scrambling bound to the
/// context by a digest. It keeps values out of plain sight, not safe from anyone; never use it
/// outside tests.
pub struct FakeSealer;

impl aether_ports::store::SecretSealer for FakeSealer {
    fn seal(&self, plain: &[u8], context: &[u8]) -> aether_domain::Result<Vec<u8>> {
        use sha2::{Digest, Sha256};
        let mut out = Sha256::digest(context)[..8].to_vec();
        out.extend(plain.iter().map(|b| b ^ 0x5a));
        Ok(out)
    }

    fn open(&self, sealed: &[u8], context: &[u8]) -> aether_domain::Result<Vec<u8>> {
        use sha2::{Digest, Sha256};
        if sealed.len() < 8 || sealed[..8] != Sha256::digest(context)[..8] {
            return Err(aether_domain::Error::internal(
                "a stored secret cannot be opened",
            ));
        }
        Ok(sealed[8..].iter().map(|b| b ^ 0x5a).collect())
    }
}
