//! How remote API and local cache failures become file-system errors (the engine's edge; the
//! FUSE adapter maps these to errno).

use aether_domain::{Code, Error, Reason};
use aether_ports::local_cache::CacheError;
use aether_ports::vfs::FsError;

/// The file-system meaning of a remote failure concerning `what` (a path or session id).
pub fn fs_error(e: Error, what: &str) -> FsError {
    let msg = format!("{what}: {}", e.message);
    match (e.code, e.reason) {
        (_, Some(Reason::NotEmpty)) => FsError::NotEmpty(msg),
        (_, Some(Reason::NotADirectory)) => FsError::NotDir(msg),
        (_, Some(Reason::IsADirectory)) => FsError::IsDir(msg),
        (_, Some(Reason::NameTooLong)) => FsError::NameTooLong(msg),
        (_, Some(Reason::NoSuchAttribute)) => FsError::NoAttribute(msg),
        (_, Some(Reason::IntoItself)) => FsError::Invalid(msg),
        (_, Some(Reason::InvalidState)) => FsError::ReadOnly(msg),
        (Code::NotFound, _) => FsError::NotFound(msg),
        (Code::AlreadyExists, _) => FsError::Exists(msg),
        (Code::InvalidArgument | Code::OutOfRange, _) => FsError::Invalid(msg),
        (Code::PermissionDenied | Code::Unauthenticated, _) => FsError::PermissionDenied(msg),
        (Code::ResourceExhausted, _) => FsError::NoSpace(msg),
        (Code::Unavailable, _) => FsError::TimedOut(msg),
        (Code::FailedPrecondition | Code::Aborted | Code::Internal, _) => FsError::Io(msg),
    }
}

pub(crate) fn cache_error(e: CacheError) -> FsError {
    match e {
        CacheError::NoSpace(m) => FsError::NoSpace(format!("local cache: {m}")),
        CacheError::Missing(m) => FsError::Io(format!("local cache lost {m}")),
        CacheError::Backend(m) => FsError::Io(format!("local cache: {m}")),
    }
}

/// Whether retrying later can succeed (the server or network is away, or asked us to slow down).
pub(crate) fn retryable(e: &Error) -> bool {
    matches!(
        e.code,
        Code::Unavailable | Code::ResourceExhausted | Code::Internal
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: Error, expected: fn(String) -> FsError) {
        let got = fs_error(e, "/x");
        let want = expected(String::new());
        assert_eq!(
            std::mem::discriminant(&got),
            std::mem::discriminant(&want),
            "{got:?}"
        );
    }

    #[test]
    fn remote_errors_map_to_their_posix_meaning() {
        check(Error::not_empty("/x"), FsError::NotEmpty);
        check(Error::not_a_directory("/x"), FsError::NotDir);
        check(Error::is_a_directory("/x"), FsError::IsDir);
        check(Error::no_such_path("/x"), FsError::NotFound);
        check(Error::exists("x"), FsError::Exists);
        check(Error::denied("x"), FsError::PermissionDenied);
        check(Error::unavailable("x"), FsError::TimedOut);
        check(
            Error::new(Code::ResourceExhausted, "quota"),
            FsError::NoSpace,
        );
        check(
            Error::precondition("archived").with_reason(Reason::InvalidState),
            FsError::ReadOnly,
        );
    }
}
