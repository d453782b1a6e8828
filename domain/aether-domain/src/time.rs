//! Timestamps with nanosecond precision; the clock itself is a port.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Nanoseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_nanos(nanos: i64) -> Self {
        Timestamp(nanos)
    }

    pub fn nanos(self) -> i64 {
        self.0
    }

    pub fn plus_secs(self, secs: u64) -> Self {
        Timestamp(
            self.0
                .saturating_add((secs as i64).saturating_mul(1_000_000_000)),
        )
    }

    /// Parses RFC 3339 (`2026-11-21T10:00:00.123456789Z`).
    pub fn parse_rfc3339(s: &str) -> Result<Self> {
        let t = humantime::parse_rfc3339_weak(s)
            .map_err(|e| Error::invalid(format!("timestamp {s:?} is not RFC 3339: {e}")))?;
        let d = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::invalid(format!("timestamp {s:?} is before 1970")))?;
        i64::try_from(d.as_nanos())
            .map(Timestamp)
            .map_err(|_| Error::invalid(format!("timestamp {s:?} is out of range")))
    }

    pub fn to_system_time(self) -> SystemTime {
        if self.0 >= 0 {
            UNIX_EPOCH + Duration::from_nanos(self.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_nanos(self.0.unsigned_abs())
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_nanos(self.to_system_time())
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = Timestamp(1_795_000_000_123_456_789);
        let s = t.to_string();
        assert!(s.ends_with('Z'), "{s}");
        assert_eq!(Timestamp::parse_rfc3339(&s).unwrap(), t);
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
    }
}
