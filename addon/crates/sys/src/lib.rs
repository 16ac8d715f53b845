//! Pieces shared by the napi addon and the `tsbox-sandbox` binary.
//!
//! Every fallible kernel call made by tsbox is reported as a [`SysError`]: the step that
//! failed (what tsbox was trying to do, in words an operator can act on) and the errno.

use std::fmt;

/// The version every tsbox component reports; the TypeScript side checks that the addon and
/// the sandbox binary it finds agree with each other, so a stale build is caught early.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysError {
    pub step: String,
    pub errno: i32,
}

impl SysError {
    pub fn new(step: impl Into<String>, errno: i32) -> Self {
        SysError { step: step.into(), errno }
    }

    /// Captures errno right after a failed libc call.
    pub fn last(step: impl Into<String>) -> Self {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        SysError::new(step, errno)
    }

    pub fn errno_name(&self) -> &'static str {
        errno_name(self.errno)
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.errno_name())
    }
}

impl std::error::Error for SysError {}

/// Symbolic names for the errnos a container runtime meets; the number is shown otherwise.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        24 => "EMFILE",
        28 => "ENOSPC",
        30 => "EROFS",
        32 => "EPIPE",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        95 => "EOPNOTSUPP",
        111 => "ECONNREFUSED",
        _ => "errno",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_step_and_errno() {
        let e = SysError::new("mount /proc", 2);
        assert_eq!(e.to_string(), "mount /proc: ENOENT");
    }
}
