//! serde adapters for domain scalars (enums as their exact strings, RFC 3339 times, base64 bytes).

use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

use aether_domain::Timestamp;

pub mod timestamp {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let raw = String::deserialize(d)?;
        Timestamp::parse_rfc3339(&raw).map_err(|e| D::Error::custom(e.message))
    }
}

pub mod opt_timestamp {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(t),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(raw) => Timestamp::parse_rfc3339(&raw)
                .map(Some)
                .map_err(|e| D::Error::custom(e.message)),
            None => Ok(None),
        }
    }
}

pub mod base64_bytes {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let raw = String::deserialize(d)?;
        STANDARD
            .decode(raw.as_bytes())
            .map_err(|e| D::Error::custom(format!("invalid base64: {e}")))
    }
}

/// Implements serde for a domain enum through its `as_str`/`parse` pair.
macro_rules! string_enum {
    ($module:ident, $ty:ty) => {
        pub mod $module {
            use super::*;

            pub fn serialize<S: Serializer>(v: &$ty, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(v.as_str())
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let raw = String::deserialize(d)?;
                <$ty>::parse(&raw).map_err(|e| D::Error::custom(e.message))
            }
        }
    };
}

string_enum!(entry_kind, aether_domain::EntryKind);
string_enum!(session_status, aether_domain::SessionStatus);

pub mod opt_session_status {
    use super::*;
    use aether_domain::SessionStatus;

    pub fn serialize<S: Serializer>(v: &Option<SessionStatus>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SessionStatus>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(raw) => SessionStatus::parse(&raw)
                .map(Some)
                .map_err(|e| D::Error::custom(e.message)),
            None => Ok(None),
        }
    }
}
