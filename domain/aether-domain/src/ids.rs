//! Identifiers, the calling principal and its scopes.

use std::collections::BTreeSet;
use std::fmt;

use crate::error::{Error, Result};

/// A tenant: the isolation boundary, spelled as a lowercase UUID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self> {
        let groups: Vec<&str> = raw.split('-').collect();
        let lens = [8, 4, 4, 4, 12];
        let ok = groups.len() == 5
            && groups
                .iter()
                .zip(lens)
                .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Err(Error::invalid(format!("tenant id {raw:?} is not a UUID")));
        }
        Ok(TenantId(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! prefixed_id {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[doc = concat!("A ", $what, " id: `", $prefix, "` followed by 1 to 64 of `[A-Za-z0-9]`.")]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn parse(raw: &str) -> Result<Self> {
                let ok = raw.strip_prefix($prefix).is_some_and(|rest| {
                    !rest.is_empty()
                        && rest.len() <= 64
                        && rest.bytes().all(|b| b.is_ascii_alphanumeric())
                });
                if ok {
                    Ok($name(raw.to_owned()))
                } else {
                    Err(Error::invalid(format!(
                        concat!(
                            $what,
                            " id {:?} is malformed; expected ",
                            $prefix,
                            " followed by letters and digits"
                        ),
                        raw
                    )))
                }
            }

            /// Builds an id from a random suffix supplied by the environment port.
            pub fn from_suffix(suffix: &str) -> Self {
                $name(format!("{}{}", $prefix, suffix))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(SessionId, "sess_", "session");
prefixed_id!(CheckpointId, "ckpt_", "checkpoint");
prefixed_id!(CommitId, "cmt_", "commit");
prefixed_id!(ApprovalId, "appr_", "approval");
prefixed_id!(AnnotationId, "ann_", "annotation");

/// An authorization scope (SPEC §4.1, exact strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    SessionRead,
    SessionWrite,
    SessionDelete,
    SessionMerge,
    SourceRead,
    SourceWrite,
    SourceDelete,
    SourceImport,
    FilesystemRead,
    FilesystemWrite,
    FilesystemMetadata,
    UsageRead,
    TenantAdmin,
    ClusterAdmin,
}

impl Scope {
    pub const ALL: [Scope; 14] = [
        Scope::SessionRead,
        Scope::SessionWrite,
        Scope::SessionDelete,
        Scope::SessionMerge,
        Scope::SourceRead,
        Scope::SourceWrite,
        Scope::SourceDelete,
        Scope::SourceImport,
        Scope::FilesystemRead,
        Scope::FilesystemWrite,
        Scope::FilesystemMetadata,
        Scope::UsageRead,
        Scope::TenantAdmin,
        Scope::ClusterAdmin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::SessionRead => "tenant.session.read",
            Scope::SessionWrite => "tenant.session.write",
            Scope::SessionDelete => "tenant.session.delete",
            Scope::SessionMerge => "tenant.session.merge",
            Scope::SourceRead => "tenant.source.read",
            Scope::SourceWrite => "tenant.source.write",
            Scope::SourceDelete => "tenant.source.delete",
            Scope::SourceImport => "tenant.source.import",
            Scope::FilesystemRead => "tenant.filesystem.read",
            Scope::FilesystemWrite => "tenant.filesystem.write",
            Scope::FilesystemMetadata => "tenant.filesystem.metadata",
            Scope::UsageRead => "tenant.usage.read",
            Scope::TenantAdmin => "tenant.admin",
            Scope::ClusterAdmin => "cluster.admin",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| Error::invalid(format!("unknown scope {raw:?}")))
    }
}

/// Who is calling: tenant, principal name and granted scopes. `tenant.admin` implies every
/// tenant scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub tenant: TenantId,
    pub name: String,
    pub scopes: BTreeSet<Scope>,
}

impl Principal {
    /// A principal holding every scope of its tenant (dev mode and tests).
    pub fn full_access(tenant: TenantId, name: impl Into<String>) -> Self {
        Principal {
            tenant,
            name: name.into(),
            scopes: Scope::ALL.into_iter().collect(),
        }
    }

    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.scopes.contains(&scope) || self.scopes.contains(&Scope::TenantAdmin) {
            Ok(())
        } else {
            Err(Error::denied(format!(
                "principal {:?} lacks the scope {} needed for this operation",
                self.name,
                scope.as_str()
            )))
        }
    }
}

/// Parses the built-in token form `<tenant-uuid>:<principal>`.
pub fn parse_dev_token(token: &str) -> Result<(TenantId, String)> {
    let (tenant, principal) = token.split_once(':').ok_or_else(|| {
        Error::unauthenticated("token is not of the form <tenant-uuid>:<principal>")
    })?;
    let tenant = TenantId::parse(tenant)
        .map_err(|_| Error::unauthenticated("token's tenant part is not a UUID"))?;
    if principal.is_empty() || principal.len() > 256 || principal.chars().any(char::is_control) {
        return Err(Error::unauthenticated(
            "token's principal part is empty, too long or has control characters",
        ));
    }
    Ok((tenant, principal.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_validate() {
        assert!(SessionId::parse("sess_abc123").is_ok());
        for bad in [
            "sess_",
            "abc",
            "sess_a-b",
            "ckpt_abc",
            &format!("sess_{}", "a".repeat(65)),
        ] {
            assert!(SessionId::parse(bad).is_err(), "{bad}");
        }
        assert!(TenantId::parse("123e4567-e89b-12d3-a456-426614174000").is_ok());
        assert!(TenantId::parse("123e4567e89b12d3a456426614174000").is_err());
    }

    #[test]
    fn scopes_and_tokens() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()).unwrap(), s);
        }
        let (t, p) = parse_dev_token("123e4567-e89b-12d3-a456-426614174000:alice").unwrap();
        assert_eq!(
            (t.as_str(), p.as_str()),
            ("123e4567-e89b-12d3-a456-426614174000", "alice")
        );
        assert!(parse_dev_token("garbage").is_err());
        assert!(parse_dev_token("123e4567-e89b-12d3-a456-426614174000:").is_err());
        let mut reader = Principal::full_access(t, "r");
        reader.scopes = [Scope::SessionRead].into_iter().collect();
        assert!(reader.require(Scope::SessionRead).is_ok());
        assert_eq!(
            reader.require(Scope::SessionWrite).unwrap_err().code,
            crate::Code::PermissionDenied
        );
    }
}
