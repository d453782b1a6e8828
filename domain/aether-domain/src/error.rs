//! The one error type of the API, shared by every implementation and every edge mapping.

use std::fmt;

/// Canonical status of a failure; each maps to one HTTP status and one errno family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    InvalidArgument,
    FailedPrecondition,
    OutOfRange,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    AlreadyExists,
    Aborted,
    ResourceExhausted,
    Internal,
    Unavailable,
}

impl Code {
    pub const ALL: [Code; 11] = [
        Code::InvalidArgument,
        Code::FailedPrecondition,
        Code::OutOfRange,
        Code::Unauthenticated,
        Code::PermissionDenied,
        Code::NotFound,
        Code::AlreadyExists,
        Code::Aborted,
        Code::ResourceExhausted,
        Code::Internal,
        Code::Unavailable,
    ];

    /// The exact status name of the SPEC's error body.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::Aborted => "ABORTED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
        }
    }

    pub fn parse(s: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A machine-readable refinement of a code, so a caller (the mount's errno mapping above all)
/// can tell "directory not empty" from "not a directory" without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    NotEmpty,
    NotADirectory,
    IsADirectory,
    InvalidState,
    IntoItself,
    NameTooLong,
    NoSuchAttribute,
    RangeNotSatisfiable,
    HashMismatch,
    /// A gated action without a granted, current approval.
    ApprovalRequired,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::NotEmpty,
        Reason::NotADirectory,
        Reason::IsADirectory,
        Reason::InvalidState,
        Reason::IntoItself,
        Reason::NameTooLong,
        Reason::NoSuchAttribute,
        Reason::RangeNotSatisfiable,
        Reason::HashMismatch,
        Reason::ApprovalRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotEmpty => "DIRECTORY_NOT_EMPTY",
            Reason::NotADirectory => "NOT_A_DIRECTORY",
            Reason::IsADirectory => "IS_A_DIRECTORY",
            Reason::InvalidState => "INVALID_SESSION_STATE",
            Reason::IntoItself => "RENAME_INTO_ITSELF",
            Reason::NameTooLong => "NAME_TOO_LONG",
            Reason::NoSuchAttribute => "NO_SUCH_ATTRIBUTE",
            Reason::RangeNotSatisfiable => "RANGE_NOT_SATISFIABLE",
            Reason::HashMismatch => "HASH_MISMATCH",
            Reason::ApprovalRequired => "APPROVAL_REQUIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// An API failure: a code, a message naming what was wrong, and optional typed details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub code: Code,
    pub message: String,
    pub reason: Option<Reason>,
    /// For `ABORTED` hash conflicts: the content hash the path has now.
    pub current_hash: Option<String>,
    /// For `RESOURCE_EXHAUSTED`: when to retry.
    pub retry_after_secs: Option<u64>,
    /// For unsatisfiable ranges: the size of the resource.
    pub resource_size: Option<u64>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            reason: None,
            current_hash: None,
            retry_after_secs: None,
            resource_size: None,
        }
    }

    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(Code::InvalidArgument, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Error::new(Code::FailedPrecondition, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Error::new(Code::NotFound, message)
    }
    pub fn exists(message: impl Into<String>) -> Self {
        Error::new(Code::AlreadyExists, message)
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Error::new(Code::PermissionDenied, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Error::new(Code::Unauthenticated, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Error::new(Code::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Error::new(Code::Unavailable, message)
    }
    pub fn hash_conflict(path: &str, current_hash: Option<String>) -> Self {
        let shown = current_hash.as_deref().unwrap_or("<absent>");
        let mut e = Error::new(
            Code::Aborted,
            format!(
                "expected hash does not match the current content of {path} (current: {shown})"
            ),
        )
        .with_reason(Reason::HashMismatch);
        e.current_hash = current_hash;
        e
    }
    pub fn range_not_satisfiable(path: &str, size: u64) -> Self {
        let mut e = Error::new(
            Code::OutOfRange,
            format!("requested range is outside {path}, which is {size} bytes long"),
        )
        .with_reason(Reason::RangeNotSatisfiable);
        e.resource_size = Some(size);
        e
    }
    pub fn not_empty(path: &str) -> Self {
        Error::precondition(format!("directory {path} is not empty")).with_reason(Reason::NotEmpty)
    }
    pub fn not_a_directory(path: &str) -> Self {
        Error::precondition(format!("{path} is not a directory")).with_reason(Reason::NotADirectory)
    }
    pub fn is_a_directory(path: &str) -> Self {
        Error::precondition(format!("{path} is a directory")).with_reason(Reason::IsADirectory)
    }
    pub fn no_such_path(path: &str) -> Self {
        Error::not_found(format!("no such file or directory: {path}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Code::ALL {
            assert_eq!(Code::parse(c.as_str()), Some(c));
        }
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
        assert_eq!(Code::parse("nope"), None);
    }
}
