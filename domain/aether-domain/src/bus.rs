//! Rules of the session message bus: what a topic may be, topic globs (`tests:*`), and the
//! limits on headers.

use crate::{Error, Result};

pub const MAX_TOPIC_BYTES: usize = 256;
pub const MAX_HEADERS: usize = 32;
pub const MAX_HEADER_BYTES: usize = 256;

fn topic_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._:/-".contains(&b)
}

/// A topic is 1–256 characters of `A-Z a-z 0-9 . _ : / -`.
pub fn check_topic(topic: &str) -> Result<()> {
    if topic.is_empty() || topic.len() > MAX_TOPIC_BYTES || !topic.bytes().all(topic_char) {
        return Err(Error::invalid(format!(
            "topic {topic:?} must be 1-{MAX_TOPIC_BYTES} characters of A-Z, a-z, 0-9, '.', '_', ':', '/', '-'"
        )));
    }
    Ok(())
}

/// Message headers: at most 32, names like topics, values up to 256 bytes.
pub fn check_headers<'a>(
    headers: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<()> {
    if headers.len() > MAX_HEADERS {
        return Err(Error::invalid(format!(
            "{} headers; the limit is {MAX_HEADERS}",
            headers.len()
        )));
    }
    for (k, v) in headers {
        if k.is_empty() || k.len() > MAX_HEADER_BYTES || !k.bytes().all(topic_char) {
            return Err(Error::invalid(format!("header name {k:?} is not valid")));
        }
        if v.len() > MAX_HEADER_BYTES {
            return Err(Error::invalid(format!(
                "header {k} is {} bytes; the limit is {MAX_HEADER_BYTES}",
                v.len()
            )));
        }
    }
    Ok(())
}

/// A topic pattern: `*` matches any run of characters, `?` exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    pub fn parse(raw: &str) -> Result<Glob> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_TOPIC_BYTES
            && raw.bytes().all(|b| topic_char(b) || b == b'*' || b == b'?');
        if ok {
            Ok(Glob(raw.to_owned()))
        } else {
            Err(Error::invalid(format!(
                "topic glob {raw:?} must be 1-{MAX_TOPIC_BYTES} characters of topic characters, '*' and '?'"
            )))
        }
    }

    pub fn matches(&self, topic: &str) -> bool {
        // Iterative wildcard matching with one backtrack point: linear in practice.
        let (p, t) = (self.0.as_bytes(), topic.as_bytes());
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn globs() {
        let check = |g: &str, t: &str, want: bool| {
            assert_eq!(Glob::parse(g).unwrap().matches(t), want, "{g} ~ {t}")
        };
        check("tests:*", "tests:unit", true);
        check("tests:*", "tests:", true);
        check("tests:*", "build:x", false);
        check("*", "anything", true);
        check("a?c", "abc", true);
        check("a?c", "ac", false);
        check("*:done", "build:x:done", true);
        check("build", "build", true);
        check("build", "builds", false);
        assert!(Glob::parse("").is_err());
        assert!(Glob::parse("tests[0-9]").is_err());
        assert!(check_topic("tests:unit/1").is_ok());
        assert!(check_topic("has space").is_err());
        assert!(check_topic("").is_err());
    }

    /// The matcher agrees with a naive recursive one.
    fn naive(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => naive(&p[1..], t) || (!t.is_empty() && naive(p, &t[1..])),
            (Some(b'?'), Some(_)) => naive(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => naive(&p[1..], &t[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn matches_like_the_naive_matcher(p in "[ab*?]{1,8}", t in "[ab]{0,10}") {
            prop_assert_eq!(Glob::parse(&p).unwrap().matches(&t), naive(p.as_bytes(), t.as_bytes()));
        }
    }
}
