//! A deterministic environment: a clock that ticks one microsecond per reading and ids from a counter.

use std::sync::atomic::{AtomicU64, Ordering};

use aether_domain::Timestamp;
use aether_ports::store::{Environment, time_ordered_suffix};

pub struct FakeEnvironment {
    start: Timestamp,
    ticks: AtomicU64,
}

impl Default for FakeEnvironment {
    fn default() -> Self {
        // 2026-01-01T00:00:00Z
        FakeEnvironment {
            start: Timestamp(1_767_225_600_000_000_000),
            ticks: AtomicU64::new(0),
        }
    }
}

impl Environment for FakeEnvironment {
    fn now(&self) -> Timestamp {
        let t = self.ticks.fetch_add(1, Ordering::Relaxed);
        Timestamp(self.start.nanos() + (t as i64) * 1_000)
    }

    fn id_suffix(&self) -> String {
        let n = self.ticks.fetch_add(1, Ordering::Relaxed);
        time_ordered_suffix(self.start, n)
    }
}
