//! Time-limited, capacity-bounded caches for the mount (lookups, attributes, negative lookups).
//! Time is passed in by the caller (elapsed time on a monotonic clock the domain never reads).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

/// The SPEC's cap on remembered "no such entry" answers.
pub const NEGATIVE_CACHE_CAPACITY: usize = 50_000;

/// Entries expire `ttl` after insertion; past `capacity`, the oldest insertions are evicted.
#[derive(Debug, Clone)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<K, Slot<V>>,
    /// Insertion order, with a stamp so a re-inserted key's older position is recognised.
    order: VecDeque<(K, u64)>,
    stamp: u64,
}

#[derive(Debug, Clone)]
struct Slot<V> {
    value: V,
    expires: Duration,
    stamp: u64,
}

impl<K: Hash + Eq + Clone, V> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        TtlCache {
            ttl,
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            stamp: 0,
        }
    }

    /// A cache for negative lookups, capped as the SPEC requires.
    pub fn negative(ttl: Duration) -> Self {
        TtlCache::new(ttl, NEGATIVE_CACHE_CAPACITY)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn insert(&mut self, key: K, value: V, now: Duration) {
        self.stamp += 1;
        let slot = Slot {
            value,
            expires: now.saturating_add(self.ttl),
            stamp: self.stamp,
        };
        self.entries.insert(key.clone(), slot);
        self.order.push_back((key, self.stamp));
        while self.entries.len() > self.capacity {
            let Some((old, stamp)) = self.order.pop_front() else {
                break;
            };
            if self.entries.get(&old).is_some_and(|s| s.stamp == stamp) {
                self.entries.remove(&old);
            }
        }
        // Re-insertions leave stale positions behind; keep the queue proportional to the map.
        if self.order.len() > 2 * self.capacity.max(16) {
            let entries = &self.entries;
            self.order
                .retain(|(k, stamp)| entries.get(k).is_some_and(|s| s.stamp == *stamp));
        }
    }

    /// The value if present and not expired at `now`; an expired entry is dropped.
    pub fn get(&mut self, key: &K, now: Duration) -> Option<&V> {
        let expired = self.entries.get(key).is_some_and(|s| s.expires <= now);
        if expired {
            self.entries.remove(key);
            return None;
        }
        self.entries.get(key).map(|s| &s.value)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|s| s.value)
    }

    /// Drops every entry whose key matches (invalidation of a subtree, for instance).
    pub fn remove_where(&mut self, mut doomed: impl FnMut(&K) -> bool) {
        self.entries.retain(|k, _| !doomed(k));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn expiry_and_eviction() {
        let mut c = TtlCache::new(10 * S, 2);
        c.insert("a", 1, Duration::ZERO);
        c.insert("b", 2, S);
        assert_eq!(c.get(&"a", 9 * S), Some(&1));
        assert_eq!(c.get(&"a", 10 * S), None, "expired exactly at ttl");
        c.insert("a", 3, 10 * S);
        c.insert("c", 4, 10 * S);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.get(&"b", 10 * S),
            None,
            "the oldest insertion was evicted"
        );
        assert_eq!(c.get(&"a", 10 * S), Some(&3));
        c.insert("a", 5, 11 * S);
        c.insert("d", 6, 11 * S);
        assert_eq!(
            c.get(&"c", 11 * S),
            None,
            "re-inserting a refreshes its place"
        );
        assert_eq!(c.get(&"a", 11 * S), Some(&5));
        c.remove_where(|k| *k == "a");
        assert!(c.get(&"a", 11 * S).is_none());
        assert_eq!(
            TtlCache::<u8, ()>::negative(S).capacity,
            NEGATIVE_CACHE_CAPACITY
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u32),
        Get(u8),
        Remove(u8),
        Advance(u64),
    }

    fn ops(keys: u8) -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                (0..keys, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
                (0..keys).prop_map(Op::Get),
                (0..keys).prop_map(Op::Remove),
                (0u64..4).prop_map(Op::Advance),
            ],
            0..200,
        )
    }

    proptest! {
        /// Never over capacity; never a value that is stale, expired or not the latest.
        #[test]
        fn sound_and_bounded(ops in ops(20), cap in 1usize..8) {
            let mut c = TtlCache::new(3 * S, cap);
            let mut latest: HashMap<u8, (u32, Duration)> = HashMap::new();
            let mut now = Duration::ZERO;
            for op in ops {
                match op {
                    Op::Insert(k, v) => { c.insert(k, v, now); latest.insert(k, (v, now)); }
                    Op::Get(k) => {
                        if let Some(v) = c.get(&k, now).copied() {
                            let (want, at) = latest[&k];
                            prop_assert_eq!(v, want);
                            prop_assert!(now < at + 3 * S);
                        }
                    }
                    Op::Remove(k) => { c.remove(&k); latest.remove(&k); }
                    Op::Advance(s) => now += Duration::from_secs(s),
                }
                prop_assert!(c.len() <= cap);
            }
        }

        /// With room for every key, the cache is exactly a map with expiry.
        #[test]
        fn exact_below_capacity(ops in ops(8)) {
            let mut c = TtlCache::new(3 * S, 8);
            let mut model: HashMap<u8, (u32, Duration)> = HashMap::new();
            let mut now = Duration::ZERO;
            for op in ops {
                match op {
                    Op::Insert(k, v) => { c.insert(k, v, now); model.insert(k, (v, now)); }
                    Op::Get(k) => {
                        let want = model.get(&k).filter(|(_, at)| now < *at + 3 * S).map(|(v, _)| *v);
                        prop_assert_eq!(c.get(&k, now).copied(), want);
                    }
                    Op::Remove(k) => { c.remove(&k); model.remove(&k); }
                    Op::Advance(s) => now += Duration::from_secs(s),
                }
            }
        }
    }
}
