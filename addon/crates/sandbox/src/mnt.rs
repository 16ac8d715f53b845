//! The new mount API (open_tree, move_mount, mount_setattr, fsopen/fsmount): mounts made
//! from and onto file descriptors, so no path is looked up between checking a target and
//! mounting on it, and a bind's flags are set before it becomes visible.

use crate::inroot::fd_path;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use tsbox_sys::sys::cstring;
use tsbox_sys::{check, fd::own, Result, SysError};

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR__ATIME: u64 = 0x70;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount at `fd` (recursive: its submounts too), not yet visible.
pub fn clone_tree(fd: &OwnedFd, recursive: bool) -> Result<OwnedFd> {
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | libc::AT_EMPTY_PATH as libc::c_uint
        | if recursive { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    Ok(own(check(ret, || "open_tree (clone the bind source)".into())? as RawFd))
}

/// Attaches a detached mount (from `clone_tree` or `fsmount`) on top of `target`.
pub fn attach(tree: &OwnedFd, target: &OwnedFd) -> Result<()> {
    let ret = unsafe {
        libc::syscall(libc::SYS_move_mount, tree.as_raw_fd(), c"".as_ptr(), target.as_raw_fd(), c"".as_ptr(), MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
    };
    check(ret, || "move_mount onto the target".into()).map(|_| ())
}

/// mount_setattr on the mount `fd` is on (and, `recursive`, all below it).
pub fn set_attr(fd: &OwnedFd, recursive: bool, set: u64, clear: u64, propagation: u64) -> Result<()> {
    let attr = MountAttr { attr_set: set, attr_clr: clear, propagation, userns_fd: 0 };
    let flags = libc::AT_EMPTY_PATH as libc::c_uint | if recursive { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
    let ret =
        unsafe { libc::syscall(libc::SYS_mount_setattr, fd.as_raw_fd(), c"".as_ptr(), flags, &attr as *const MountAttr, std::mem::size_of::<MountAttr>()) };
    check(ret, || "mount_setattr".into()).map(|_| ())
}

/// MS_* flags (as in a spec's options) → MOUNT_ATTR_* bits to set and to clear.
pub fn attrs_of(ms: u64) -> (u64, u64) {
    let mut set = 0;
    for (m, a) in [
        (libc::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
        (libc::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
    ] {
        if ms & m != 0 {
            set |= a;
        }
    }
    // Access-time modes are one field: asking for one clears the others.
    let atime = if ms & libc::MS_NOATIME != 0 {
        Some(MOUNT_ATTR_NOATIME)
    } else if ms & libc::MS_STRICTATIME != 0 {
        Some(MOUNT_ATTR_STRICTATIME)
    } else if ms & libc::MS_RELATIME != 0 {
        Some(0)
    } else {
        None
    };
    let mut clear = (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NODIRATIME) & !set;
    if let Some(a) = atime {
        set |= a;
        clear |= MOUNT_ATTR__ATIME;
    }
    (set, clear)
}

/// Applies a bind mount's flags the way `mount -o remount,bind,FLAGS` does. In a user
/// namespace the kernel refuses to clear flags the host locked (nosuid, nodev, …); those
/// are then kept, and only the asked-for ones are added.
pub fn set_bind_flags(tree: &OwnedFd, ms: u64) -> Result<()> {
    let (set, clear) = attrs_of(ms);
    match set_attr(tree, false, set, clear, 0) {
        Err(e) if e.errno == libc::EPERM => set_attr(tree, false, set, 0, 0),
        r => r,
    }
}

/// A new filesystem instance, detached: `data` is the comma-separated option string of
/// mount(8) (key=value or flag words), `ms` the MS_* per-mount flags.
pub fn new_fs(fstype: &str, data: &str, ms: u64) -> Result<OwnedFd> {
    let t = cstring(fstype);
    let fs = own(check(unsafe { libc::syscall(libc::SYS_fsopen, t.as_ptr(), FSOPEN_CLOEXEC) }, || format!("fsopen {fstype}"))? as RawFd);
    for opt in data.split(',').filter(|o| !o.is_empty()) {
        let (cmd, key, value) = match opt.split_once('=') {
            Some((k, v)) => (FSCONFIG_SET_STRING, cstring(k), Some(cstring(v))),
            None => (FSCONFIG_SET_FLAG, cstring(opt), None),
        };
        let v = value.as_ref().map_or(std::ptr::null(), |c| c.as_ptr() as *const libc::c_void);
        check(unsafe { libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), cmd, key.as_ptr(), v, 0) }, || format!("{fstype} option {opt}"))?;
    }
    let cfg = unsafe {
        libc::syscall(libc::SYS_fsconfig, fs.as_raw_fd(), FSCONFIG_CMD_CREATE, std::ptr::null::<libc::c_char>(), std::ptr::null::<libc::c_void>(), 0)
    };
    check(cfg, || format!("create a {fstype} filesystem"))?;
    let m = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs_of(ms).0) };
    Ok(own(check(m, || format!("fsmount {fstype}"))? as RawFd))
}

/// An empty read-only tmpfs, detached (for masking a directory).
pub fn empty_tmpfs() -> Result<OwnedFd> {
    new_fs("tmpfs", "", libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC)
}

/// mount(2) of a filesystem onto an fd. Goes through /proc/self/fd, so only before
/// pivot_root, while /proc is the host's.
pub fn mount_fs_on(source: &str, target: &OwnedFd, fstype: &str, flags: u64, data: &str) -> Result<()> {
    let (s, t, f) = (cstring(source), cstring(&fd_path(target)), cstring(fstype));
    let d = (!data.is_empty()).then(|| cstring(data));
    let ret = unsafe {
        libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags as libc::c_ulong, d.as_ref().map_or(std::ptr::null(), |c| c.as_ptr() as *const libc::c_void))
    };
    check(ret, || format!("mount {fstype} {source}")).map(|_| ())
}

/// Changes the propagation of the mount at `fd` (MS_SHARED/… | MS_REC).
pub fn set_propagation(fd: &OwnedFd, ms: u64) -> Result<()> {
    let kind = ms & (libc::MS_SHARED | libc::MS_SLAVE | libc::MS_PRIVATE | libc::MS_UNBINDABLE);
    set_attr(fd, ms & libc::MS_REC != 0, 0, 0, kind).map_err(|e| SysError::new(format!("set propagation {ms:#x}: {}", e.step), e.errno))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_attrs_and_the_rest_is_cleared() {
        let (set, clear) = attrs_of(libc::MS_RDONLY | libc::MS_NOSUID);
        assert_eq!(set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
        assert_eq!(clear, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NODIRATIME);
        let (set, clear) = attrs_of(libc::MS_NOATIME);
        assert_eq!(set & MOUNT_ATTR__ATIME, MOUNT_ATTR_NOATIME);
        assert_eq!(clear & MOUNT_ATTR__ATIME, MOUNT_ATTR__ATIME);
    }
}
