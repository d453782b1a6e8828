//! Rules of the knowledge cache (per-session key/value store): what a key may be, how TTLs turn
//! into expiry times, when a stored record counts as present, and the compare-and-set decision.

use crate::{Error, Result, Timestamp};

pub const MAX_KEY_BYTES: usize = 512;
/// Ten years: long enough for any cache, short enough that an expiry time cannot overflow.
pub const MAX_TTL_SECONDS: u64 = 10 * 365 * 24 * 3600;

/// A key is 1–512 bytes of UTF-8 without NUL (`/` is allowed; it is percent-encoded in routes).
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("cache key is empty (1-512 bytes of UTF-8)"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(format!(
            "cache key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if key.contains('\0') {
        return Err(Error::invalid(format!("cache key {key:?} contains NUL")));
    }
    Ok(())
}

/// A prefix for listing or deleting keys: like a key, but the empty prefix means all keys.
pub fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_key(prefix).map_err(|e| Error::invalid(e.message.replace("cache key", "prefix")))
}

/// When a value written at `now` with `ttl_seconds` expires (`None`: never).
pub fn expiry(now: Timestamp, ttl_seconds: Option<u64>) -> Result<Option<Timestamp>> {
    match ttl_seconds {
        None => Ok(None),
        Some(0) => Err(Error::invalid(
            "ttlSeconds must be at least 1 (omit it for no expiry)",
        )),
        Some(t) if t > MAX_TTL_SECONDS => Err(Error::invalid(format!(
            "ttlSeconds {t} is above the limit of {MAX_TTL_SECONDS} (ten years)"
        ))),
        Some(t) => Ok(Some(now.plus_secs(t))),
    }
}

/// Whether a record with `expires_at` is still present at `now`.
pub fn is_live(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_none_or(|t| t > now)
}

/// The compare-and-set decision: `current` is the present version (0 when the key is absent,
/// deleted or expired); `expected` 0 asks for an absent key.
pub fn cas_allows(current: u64, expected: u64) -> bool {
    current == expected
}

/// The version a write gives a key whose last version ever (present or not) was `last`.
/// Versions never go back, so a compare-and-set cannot mistake a re-created key for the old one.
pub fn next_version(last: u64) -> u64 {
    last + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &str, ok: bool) {
        assert_eq!(check_key(key).is_ok(), ok, "{key:?}");
    }

    #[test]
    fn keys() {
        check("a", true);
        check("tests/unit/é", true);
        check(&"k".repeat(512), true);
        check(&"é".repeat(256), true);
        check("", false);
        check(&"k".repeat(513), false);
        check("a\0b", false);
        assert!(check_prefix("").is_ok());
        assert!(check_prefix(&"p".repeat(513)).is_err());
    }

    #[test]
    fn expiry_and_liveness() {
        let now = Timestamp::from_nanos(1_000_000_000);
        assert_eq!(expiry(now, None).unwrap(), None);
        assert!(expiry(now, Some(0)).is_err());
        assert!(expiry(now, Some(MAX_TTL_SECONDS + 1)).is_err());
        let t = expiry(now, Some(5)).unwrap().unwrap();
        assert_eq!(t, Timestamp::from_nanos(6_000_000_000));
        assert!(is_live(Some(t), now));
        assert!(!is_live(Some(t), t), "expired at the instant itself");
        assert!(is_live(None, t));
    }

    #[test]
    fn compare_and_set() {
        assert!(cas_allows(0, 0));
        assert!(cas_allows(3, 3));
        assert!(!cas_allows(3, 0));
        assert!(!cas_allows(0, 3));
        assert_eq!(next_version(0), 1);
        assert_eq!(next_version(7), 8);
    }
}
