//! Write backpressure (SPEC 5.1 `[backpressure]`): when the write-back backlog, the dirty
//! cache or the cache disk crosses a high-water mark, new writes wait; they resume only once
//! every measure is back under its low-water mark (hysteresis, so writers are not toggled on
//! and off at one threshold).

use std::time::Duration;

/// The thresholds, with the SPEC's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub journal_high_bytes: u64,
    pub journal_low_bytes: u64,
    pub journal_high_entries: u64,
    pub journal_low_entries: u64,
    pub journal_max_age: Duration,
    pub journal_clear_age: Duration,
    pub dirty_high_bytes: u64,
    pub dirty_low_bytes: u64,
    pub disk_low_free_bytes: u64,
    pub disk_high_free_bytes: u64,
    pub disk_low_free_percent: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            journal_high_bytes: 32 << 20,
            journal_low_bytes: 24 << 20,
            journal_high_entries: 4096,
            journal_low_entries: 2048,
            journal_max_age: Duration::from_secs(30),
            journal_clear_age: Duration::from_secs(10),
            dirty_high_bytes: 64 << 20,
            dirty_low_bytes: 48 << 20,
            disk_low_free_bytes: 512 << 20,
            disk_high_free_bytes: 768 << 20,
            disk_low_free_percent: 5.0,
        }
    }
}

/// One reading of the measures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    pub journal_bytes: u64,
    pub journal_entries: u64,
    pub oldest_age: Duration,
    pub dirty_bytes: u64,
    /// Free and total bytes of the cache's disk (`None` when unknown).
    pub disk: Option<(u64, u64)>,
}

/// Why writers are held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    JournalBytes,
    JournalEntries,
    JournalAge,
    DirtyBytes,
    DiskFree,
}

impl Pressure {
    pub fn as_str(self) -> &'static str {
        match self {
            Pressure::JournalBytes => "journal_bytes",
            Pressure::JournalEntries => "journal_entries",
            Pressure::JournalAge => "journal_age",
            Pressure::DirtyBytes => "cache_dirty_bytes",
            Pressure::DiskFree => "cache_disk_free",
        }
    }
}

/// The gate's state: open, or holding writers back for a reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Gate {
    #[default]
    Open,
    Held(Pressure),
}

impl Thresholds {
    /// Whether the cache's disk has crossed its low-free mark (bytes or percent).
    fn disk_low(&self, disk: Option<(u64, u64)>) -> bool {
        disk.is_some_and(|(free, total)| {
            free < self.disk_low_free_bytes
                || (total > 0
                    && (free as f64) * 100.0 / (total as f64) < self.disk_low_free_percent)
        })
    }

    /// When the cache's disk is below its low-free mark: how many bytes must be freed to bring
    /// it back to its high-free mark (and as far above the percentage mark as the byte marks
    /// are apart), so that an eviction is not repeated at every write.
    pub fn disk_shortfall(&self, disk: Option<(u64, u64)>) -> Option<u64> {
        if !self.disk_low(disk) {
            return None;
        }
        let (free, total) = disk?;
        let margin = self
            .disk_high_free_bytes
            .saturating_sub(self.disk_low_free_bytes);
        let by_percent = (total as f64 * self.disk_low_free_percent / 100.0).ceil() as u64;
        let target = self
            .disk_high_free_bytes
            .max(by_percent.saturating_add(margin));
        Some(target.saturating_sub(free).max(1))
    }

    /// The first high-water mark `r` crosses, if any.
    fn crossed_high(&self, r: &Reading) -> Option<Pressure> {
        let disk_low = self.disk_low(r.disk);
        [
            (
                r.journal_bytes >= self.journal_high_bytes,
                Pressure::JournalBytes,
            ),
            (
                r.journal_entries >= self.journal_high_entries,
                Pressure::JournalEntries,
            ),
            (
                r.journal_entries > 0 && r.oldest_age >= self.journal_max_age,
                Pressure::JournalAge,
            ),
            (r.dirty_bytes >= self.dirty_high_bytes, Pressure::DirtyBytes),
            (disk_low, Pressure::DiskFree),
        ]
        .into_iter()
        .find_map(|(hit, p)| hit.then_some(p))
    }

    /// Whether every measure is back under its low-water mark.
    fn all_clear(&self, r: &Reading) -> bool {
        r.journal_bytes <= self.journal_low_bytes
            && r.journal_entries <= self.journal_low_entries
            && (r.journal_entries == 0 || r.oldest_age <= self.journal_clear_age)
            && r.dirty_bytes <= self.dirty_low_bytes
            && r.disk
                .is_none_or(|(free, _)| free >= self.disk_high_free_bytes)
    }

    /// The next state of the gate after reading `r`.
    pub fn next(&self, gate: Gate, r: &Reading) -> Gate {
        match gate {
            Gate::Open => self.crossed_high(r).map_or(Gate::Open, Gate::Held),
            Gate::Held(_) if self.all_clear(r) => Gate::Open,
            Gate::Held(p) => Gate::Held(self.crossed_high(r).unwrap_or(p)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reading(bytes: u64, entries: u64, age_s: u64) -> Reading {
        Reading {
            journal_bytes: bytes,
            journal_entries: entries,
            oldest_age: Duration::from_secs(age_s),
            dirty_bytes: 0,
            disk: None,
        }
    }

    fn check(start: Gate, r: Reading, expected: Gate) {
        assert_eq!(
            Thresholds::default().next(start, &r),
            expected,
            "{start:?} {r:?}"
        );
    }

    #[test]
    fn gates_close_at_high_water_and_open_under_low_water() {
        let mib = 1 << 20;
        check(Gate::Open, reading(10 * mib, 10, 1), Gate::Open);
        check(
            Gate::Open,
            reading(32 * mib, 10, 1),
            Gate::Held(Pressure::JournalBytes),
        );
        check(
            Gate::Open,
            reading(0, 4096, 1),
            Gate::Held(Pressure::JournalEntries),
        );
        check(
            Gate::Open,
            reading(1, 1, 30),
            Gate::Held(Pressure::JournalAge),
        );
        check(Gate::Open, reading(0, 0, 300), Gate::Open);
        // Between the marks the gate keeps its state.
        check(
            Gate::Held(Pressure::JournalBytes),
            reading(28 * mib, 10, 1),
            Gate::Held(Pressure::JournalBytes),
        );
        check(Gate::Open, reading(28 * mib, 10, 1), Gate::Open);
        check(
            Gate::Held(Pressure::JournalBytes),
            reading(24 * mib, 10, 1),
            Gate::Open,
        );
        check(
            Gate::Held(Pressure::JournalAge),
            reading(1, 1, 11),
            Gate::Held(Pressure::JournalAge),
        );
        check(
            Gate::Held(Pressure::JournalAge),
            reading(1, 1, 10),
            Gate::Open,
        );
        let disk = |free: u64, total: u64| Reading {
            disk: Some((free, total)),
            ..Default::default()
        };
        check(
            Gate::Open,
            disk(100 * mib, 100_000 * mib),
            Gate::Held(Pressure::DiskFree),
        );
        check(
            Gate::Open,
            disk(600 * mib, 100_000 * mib),
            Gate::Held(Pressure::DiskFree),
        );
        check(Gate::Open, disk(6_000 * mib, 100_000 * mib), Gate::Open);
        check(
            Gate::Held(Pressure::DiskFree),
            disk(700 * mib, 1_000 * mib),
            Gate::Held(Pressure::DiskFree),
        );
        check(
            Gate::Held(Pressure::DiskFree),
            disk(800 * mib, 1_000 * mib),
            Gate::Open,
        );
    }

    proptest! {
        /// The gate is never open above a high-water mark, never held when every measure is
        /// under its low-water mark.
        #[test]
        fn the_gate_respects_both_marks(
            readings in proptest::collection::vec((0u64..64 << 20, 0u64..8192, 0u64..60, 0u64..128 << 20), 1..50)
        ) {
            let t = Thresholds::default();
            let mut gate = Gate::Open;
            for (bytes, entries, age, dirty) in readings {
                let r = Reading { journal_bytes: bytes, journal_entries: entries, oldest_age: Duration::from_secs(age), dirty_bytes: dirty, disk: None };
                gate = t.next(gate, &r);
                if t.crossed_high(&r).is_some() {
                    prop_assert!(matches!(gate, Gate::Held(_)));
                }
                if t.all_clear(&r) {
                    prop_assert_eq!(gate, Gate::Open);
                }
            }
        }
    }

    #[test]
    fn a_low_disk_asks_for_enough_to_reach_the_high_mark() {
        let t = Thresholds::default();
        let gib = 1u64 << 30;
        assert_eq!(t.disk_shortfall(Some((600 << 20, 4 * gib))), None);
        assert_eq!(t.disk_shortfall(None), None);
        // Below 512 MiB free on a small disk: back to 768 MiB.
        assert_eq!(
            t.disk_shortfall(Some((500 << 20, 4 * gib))),
            Some(268 << 20)
        );
        // Below 5 % of a large disk: back to 5 % plus the 256 MiB between the byte marks.
        let total = 1000 * gib;
        let free = 40 * gib;
        let want = (total as f64 * 0.05).ceil() as u64 + (256 << 20) - free;
        assert_eq!(t.disk_shortfall(Some((free, total))), Some(want));
    }
}
