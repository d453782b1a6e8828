//! The one mapping from file-system errors to Linux errno values.

use aether_ports::vfs::FsError;
use fuser::Errno;

pub fn errno_of(e: &FsError) -> Errno {
    match e {
        FsError::NotFound(_) => Errno::ENOENT,
        FsError::Exists(_) => Errno::EEXIST,
        FsError::NotDir(_) => Errno::ENOTDIR,
        FsError::IsDir(_) => Errno::EISDIR,
        FsError::NotEmpty(_) => Errno::ENOTEMPTY,
        FsError::Invalid(_) => Errno::EINVAL,
        FsError::NameTooLong(_) => Errno::ENAMETOOLONG,
        FsError::IllegalName(_) => Errno::EILSEQ,
        FsError::PermissionDenied(_) => Errno::EACCES,
        FsError::NotPermitted(_) => Errno::EPERM,
        FsError::ReadOnly(_) => Errno::EROFS,
        FsError::NoSpace(_) => Errno::ENOSPC,
        FsError::TooBig(_) => Errno::EFBIG,
        FsError::NoAttribute(_) => Errno::NO_XATTR,
        FsError::Range(_) => Errno::ERANGE,
        FsError::BadHandle(_) => Errno::EBADF,
        FsError::Loop(_) => Errno::ELOOP,
        FsError::Unsupported(_) => Errno::EOPNOTSUPP,
        FsError::TimedOut(_) => Errno::ETIMEDOUT,
        FsError::Io(_) => Errno::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(e: FsError, expected: i32) {
        assert_eq!(errno_of(&e), Errno::from_i32(expected), "{e:?}");
    }

    #[test]
    fn errors_map_to_linux_errno() {
        check(FsError::NotFound(String::new()), libc::ENOENT);
        check(FsError::NotEmpty(String::new()), libc::ENOTEMPTY);
        check(FsError::IllegalName(String::new()), libc::EILSEQ);
        check(FsError::NameTooLong(String::new()), libc::ENAMETOOLONG);
        check(FsError::NoAttribute(String::new()), libc::ENODATA);
        check(FsError::ReadOnly(String::new()), libc::EROFS);
        check(FsError::TooBig(String::new()), libc::EFBIG);
        check(FsError::Unsupported(String::new()), libc::EOPNOTSUPP);
    }
}
