//! Content names as the inode table keeps them: in fixed bytes rather than hex strings, since the
//! table holds one or two per node and a mount may hold hundreds of thousands of nodes.

use std::fmt;

use aether_ports::local_cache::LocalName;

/// A content name: a SHA-256 digest (what the server names content by), a local name (large
/// content this mount wrote and the server has not named yet), or, kept as it came, anything
/// else a server calls a content hash. Converting back gives the exact string it was made from.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum ContentId {
    Digest([u8; 32]),
    Local([u8; 12]),
    Other(Box<str>),
}

impl ContentId {
    /// The name `name`, in whichever form holds it exactly. Only lower-case hex is packed, so
    /// that `to_string` gives back the same string.
    pub(crate) fn new(name: &str) -> ContentId {
        let mut digest = [0u8; 32];
        if name.len() == 64 && is_lower_hex(name) && hex::decode_to_slice(name, &mut digest).is_ok()
        {
            return ContentId::Digest(digest);
        }
        let mut local = [0u8; 12];
        if let Some(rest) = name.strip_prefix(LocalName::PREFIX)
            && LocalName::is(name)
            && is_lower_hex(rest)
            && hex::decode_to_slice(rest, &mut local).is_ok()
        {
            return ContentId::Local(local);
        }
        ContentId::Other(name.into())
    }

    /// `ContentId::new` over an optional name.
    pub(crate) fn of(name: Option<&str>) -> Option<ContentId> {
        name.map(ContentId::new)
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl fmt::Display for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContentId::Digest(d) => f.write_str(&hex::encode(d)),
            ContentId::Local(l) => write!(f, "{}{}", LocalName::PREFIX, hex::encode(l)),
            ContentId::Other(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for ContentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_comes_back_exactly() {
        let digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let local = LocalName::make(0x0123_4567_89ab_cdef, 42);
        for (name, packed) in [
            (digest, true),
            (local.as_str(), true),
            // Upper case, the wrong length and a prefix alone are kept as they came.
            (
                "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
                false,
            ),
            (&digest[..63], false),
            ("local-0123", false),
            ("sha256:abc", false),
            ("", false),
        ] {
            let id = ContentId::new(name);
            assert_eq!(id.to_string(), name);
            assert_eq!(!matches!(id, ContentId::Other(_)), packed, "{name}");
            assert_eq!(id, ContentId::new(name));
        }
        assert_ne!(ContentId::new(digest), ContentId::new(&local));
    }

    #[test]
    fn a_digest_takes_no_more_room_than_its_bytes() {
        // The point of the type: no heap allocation for the names the table holds most.
        assert!(size_of::<Option<ContentId>>() <= 40);
    }
}
