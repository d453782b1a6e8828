//! Validated absolute session paths (SPEC §4.1 path rules).

use std::fmt;

use crate::error::{Error, Reason, Result};

pub const MAX_COMPONENT_BYTES: usize = 255;
pub const MAX_PATH_BYTES: usize = 4096;

/// An absolute, normalised path inside a session: `/` or `/a/b`, never with a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionPath(String);

impl SessionPath {
    pub fn root() -> Self {
        SessionPath("/".to_owned())
    }

    /// Validates `raw` against every rule and names the broken one in the error.
    pub fn parse(raw: &str) -> Result<Self> {
        if raw.is_empty() {
            return Err(Error::invalid(
                "path is empty; paths are absolute, such as /src/main.rs",
            ));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(Error::invalid(format!(
                "path is {} bytes long; the limit is {MAX_PATH_BYTES} bytes",
                raw.len()
            ))
            .with_reason(Reason::NameTooLong));
        }
        if raw.contains('\0') {
            return Err(Error::invalid(format!("path {raw:?} contains a NUL byte")));
        }
        if !raw.starts_with('/') {
            return Err(Error::invalid(format!("path {raw:?} must start with /")));
        }
        if raw == "/" {
            return Ok(SessionPath::root());
        }
        if raw.ends_with('/') {
            return Err(Error::invalid(format!("path {raw:?} must not end with /")));
        }
        for component in raw[1..].split('/') {
            match component {
                "" => {
                    return Err(Error::invalid(format!(
                        "path {raw:?} contains an empty component (//)"
                    )));
                }
                "." | ".." => {
                    return Err(Error::invalid(format!(
                        "path {raw:?} contains a {component:?} component; paths must be normalised"
                    )));
                }
                c if c.len() > MAX_COMPONENT_BYTES => {
                    return Err(Error::invalid(format!(
                        "path {raw:?} has a component of {} bytes; the limit is {MAX_COMPONENT_BYTES} bytes",
                        c.len()
                    ))
                    .with_reason(Reason::NameTooLong));
                }
                _ => {}
            }
        }
        Ok(SessionPath(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The parent directory; the root is its own parent.
    pub fn parent(&self) -> SessionPath {
        match self.0.rfind('/') {
            Some(0) | None => SessionPath::root(),
            Some(i) => SessionPath(self.0[..i].to_owned()),
        }
    }

    /// The last component; empty for the root.
    pub fn name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => "",
        }
    }

    /// Appends one component, which must itself be valid.
    pub fn join(&self, name: &str) -> Result<SessionPath> {
        if self.is_root() {
            SessionPath::parse(&format!("/{name}"))
        } else {
            SessionPath::parse(&format!("{}/{name}", self.0))
        }
    }

    /// True when `self` is a strict ancestor of `other`.
    pub fn is_ancestor_of(&self, other: &SessionPath) -> bool {
        if self.is_root() {
            return !other.is_root();
        }
        other.0.len() > self.0.len()
            && other.0.starts_with(&self.0)
            && other.0.as_bytes()[self.0.len()] == b'/'
    }

    /// The prefix every descendant's path starts with (`/a/` for `/a`, `/` for the root).
    pub fn descendant_prefix(&self) -> String {
        if self.is_root() {
            "/".to_owned()
        } else {
            format!("{}/", self.0)
        }
    }

    /// Re-roots a descendant (or `self`) of `self` under `to`.
    pub fn rebase(&self, descendant: &SessionPath, to: &SessionPath) -> Result<SessionPath> {
        if descendant == self {
            return Ok(to.clone());
        }
        let rest = &descendant.0[self.descendant_prefix().len()..];
        if to.is_root() {
            SessionPath::parse(&format!("/{rest}"))
        } else {
            SessionPath::parse(&format!("{}/{rest}", to.0))
        }
    }

    /// Every ancestor from the root down to the parent (excluding `self`).
    pub fn ancestors(&self) -> Vec<SessionPath> {
        let mut out = Vec::new();
        let mut p = self.clone();
        while !p.is_root() {
            p = p.parent();
            out.push(p.clone());
        }
        out.reverse();
        out
    }

    pub fn depth(&self) -> usize {
        if self.is_root() {
            0
        } else {
            self.0.matches('/').count()
        }
    }
}

impl fmt::Display for SessionPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: std::result::Result<&str, &str>) {
        match (SessionPath::parse(raw), expected) {
            (Ok(p), Ok(want)) => assert_eq!(p.as_str(), want),
            (Err(e), Err(fragment)) => {
                assert!(e.message.contains(fragment), "{raw:?}: {}", e.message)
            }
            (got, want) => panic!("{raw:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parse_rules() {
        let long_name = "x".repeat(256);
        let long_path = format!("/{}", ["a"; 2100].join("/"));
        let table: Vec<(&str, std::result::Result<&str, &str>)> = vec![
            ("/", Ok("/")),
            ("/a", Ok("/a")),
            ("/a/b.txt", Ok("/a/b.txt")),
            ("/ünïcode/ok", Ok("/ünïcode/ok")),
            ("", Err("empty")),
            ("a/b", Err("must start with /")),
            ("/a/", Err("must not end with /")),
            ("//a", Err("empty component")),
            ("/a//b", Err("empty component")),
            ("/a/./b", Err("\".\" component")),
            ("/a/../b", Err("\"..\" component")),
            ("/..", Err("\"..\" component")),
            ("/a\0b", Err("NUL")),
            (&long_path, Err("limit is 4096")),
        ];
        for (raw, want) in table {
            check(raw, want);
        }
        check(&format!("/{long_name}"), Err("limit is 255"));
        check(
            &format!("/{}", &long_name[1..]),
            Ok(&format!("/{}", &long_name[1..])),
        );
    }

    #[test]
    fn relations() {
        let p = |s| SessionPath::parse(s).unwrap();
        assert_eq!(p("/a/b").parent(), p("/a"));
        assert_eq!(p("/a").parent(), p("/"));
        assert_eq!(p("/a/b").name(), "b");
        assert!(p("/a").is_ancestor_of(&p("/a/b")));
        assert!(!p("/a").is_ancestor_of(&p("/ab")));
        assert!(!p("/a").is_ancestor_of(&p("/a")));
        assert!(p("/").is_ancestor_of(&p("/a")));
        assert_eq!(p("/a").rebase(&p("/a/x/y"), &p("/b")).unwrap(), p("/b/x/y"));
        assert_eq!(p("/a/b/c").ancestors(), vec![p("/"), p("/a"), p("/a/b")]);
        assert_eq!(p("/a/b").depth(), 2);
    }
}
