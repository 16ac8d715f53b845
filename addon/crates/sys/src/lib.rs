//! Pieces shared by the napi addon and the `tsbox-sandbox` binary.
//!
//! Every fallible kernel call made by tsbox is reported as a [`SysError`]: the step that
//! failed (what tsbox was trying to do, in words an operator can act on), the errno, and
//! where it applies the spec field that asked for it.

pub mod cgroup_teardown;
pub mod devices;
pub mod fd;
pub mod sys;

use std::fmt;

/// The version every tsbox component reports; tests check that the addon and the sandbox
/// binary agree, so a stale build is caught early.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysError {
    pub step: String,
    pub errno: i32,
    /// The OCI spec field this step serves, e.g. `mounts[3]`; empty when none.
    pub field: String,
}

pub type Result<T> = std::result::Result<T, SysError>;

impl SysError {
    pub fn new(step: impl Into<String>, errno: i32) -> Self {
        SysError { step: step.into(), errno, field: String::new() }
    }

    /// Captures errno right after a failed libc call.
    pub fn last(step: impl Into<String>) -> Self {
        SysError::new(step, last_errno())
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        if self.field.is_empty() {
            self.field = field.into();
        }
        self
    }

    pub fn errno_name(&self) -> &'static str {
        errno_name(self.errno)
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        if self.errno == 0 {
            write!(f, "{}", self.step)
        } else {
            match self.errno_name() {
                // An errno without a name here still says which one it was.
                "errno" => write!(f, "{}: errno {} ({})", self.step, self.errno, errno_text(self.errno)),
                name => write!(f, "{}: {name} ({})", self.step, errno_text(self.errno)),
            }
        }
    }
}

impl std::error::Error for SysError {}

pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Turns a libc-style return value into a Result, naming the step on failure.
pub fn check<T: Copy + PartialOrd + Default>(ret: T, step: impl FnOnce() -> String) -> Result<T> {
    if ret < T::default() {
        Err(SysError::last(step()))
    } else {
        Ok(ret)
    }
}

/// What the errno means, as strerror says it but in lower case ("no such file or directory").
pub fn errno_text(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or("").to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// Symbolic names for the errnos a container runtime meets; "errno" for the others (the
/// message and the wire carry the number beside it).
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        0 => "unknown error",
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        15 => "ENOTBLK",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        30 => "EROFS",
        31 => "EMLINK",
        32 => "EPIPE",
        34 => "ERANGE",
        36 => "ENAMETOOLONG",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        61 => "ENODATA",
        71 => "EPROTO",
        75 => "EOVERFLOW",
        90 => "EMSGSIZE",
        95 => "EOPNOTSUPP",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        _ => "errno",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_field_step_and_errno() {
        let e = SysError::new("bind source /x", 2).with_field("mounts[3] (/data)");
        assert_eq!(e.to_string(), "mounts[3] (/data): bind source /x: ENOENT (no such file or directory)");
        assert_eq!(SysError::new("connect", libc::EHOSTUNREACH).to_string(), "connect: errno 113 (no route to host)");
    }

    #[test]
    fn check_passes_success_and_captures_errno() {
        assert_eq!(check(3, || "x".into()), Ok(3));
        let r = unsafe { libc::close(-1) };
        let e = check(r, || "close -1".into()).unwrap_err();
        assert_eq!((e.step.as_str(), e.errno), ("close -1", libc::EBADF));
    }
}
