//! Thin wrappers over the syscalls libc does not wrap (or wraps awkwardly).

use crate::{check, Result};
use std::ffi::CString;
use std::os::fd::RawFd;

pub fn cstring(s: &str) -> CString {
    // Interior NULs cannot come from JSON strings we validated; replace rather than panic.
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

pub const CLONE_PIDFD: u64 = 0x1000;
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

pub enum Forked {
    Child,
    Parent { pid: i32, pidfd: RawFd },
}

/// clone3 without CLONE_VM: a fork that can enter new namespaces and hands back a pidfd.
/// Only for single-threaded callers (tsbox-sandbox): the child continues on a copy of the
/// whole address space.
pub fn clone3(flags: u64) -> Result<Forked> {
    clone3_into(flags, None)
}

/// clone3, the child born in the cgroup v2 directory `cgroup` (an open fd) when given:
/// no migration afterwards, which would take the kernel's cgroup write lock (an RCU grace
/// period, milliseconds, per process started).
pub fn clone3_into(flags: u64, cgroup: Option<RawFd>) -> Result<Forked> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs { flags: flags | CLONE_PIDFD, pidfd: &mut pidfd as *mut RawFd as u64, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    let pid = check(ret, || format!("clone3 flags={:#x}", args.flags))?;
    if pid == 0 {
        Ok(Forked::Child)
    } else {
        Ok(Forked::Parent { pid: pid as i32, pidfd })
    }
}

pub fn pidfd_send_signal(pidfd: RawFd, sig: i32) -> Result<()> {
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd, sig, std::ptr::null::<libc::siginfo_t>(), 0) };
    check(ret, || format!("pidfd_send_signal {sig}"))?;
    Ok(())
}

pub fn pidfd_open(pid: i32) -> Result<RawFd> {
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    Ok(check(ret, || format!("pidfd_open {pid}"))? as RawFd)
}

pub fn pivot_root(new_root: &str, put_old: &str) -> Result<()> {
    let (a, b) = (cstring(new_root), cstring(put_old));
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, a.as_ptr(), b.as_ptr()) };
    check(ret, || format!("pivot_root {new_root}"))?;
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets this thread's effective, permitted and inheritable capability sets.
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<()> {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [
        CapData { effective: effective as u32, permitted: permitted as u32, inheritable: inheritable as u32 },
        CapData { effective: (effective >> 32) as u32, permitted: (permitted >> 32) as u32, inheritable: (inheritable >> 32) as u32 },
    ];
    let ret = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    check(ret, || "capset".into())?;
    Ok(())
}

/// The highest capability number this kernel knows, asked of the kernel itself
/// (PR_CAPBSET_READ fails with EINVAL past it): never read from a /proc that a container
/// could have put something else at.
pub fn cap_last_cap() -> u32 {
    let mut last = 0;
    for cap in 0..64u32 {
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } < 0 {
            break;
        }
        last = cap;
    }
    last
}

const MFD_CLOEXEC: libc::c_uint = 0x1;
const MFD_ALLOW_SEALING: libc::c_uint = 0x2;
const MFD_EXEC: libc::c_uint = 0x10;

/// A sealed in-memory copy of the executable at `path` (close-on-exec), to run instead
/// of the file: a process started from it has no host file behind /proc/<pid>/exe, and
/// the copy can never be written (CVE-2019-5736: a container overwriting the runtime).
pub fn sealed_copy(path: &str) -> Result<RawFd> {
    let name = c"tsbox-sandbox";
    // MFD_EXEC is needed where vm.memfd_noexec defaults to no-exec; older kernels refuse it.
    let mut fd = unsafe { libc::syscall(libc::SYS_memfd_create, name.as_ptr(), MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC) };
    if fd < 0 && crate::last_errno() == libc::EINVAL {
        fd = unsafe { libc::syscall(libc::SYS_memfd_create, name.as_ptr(), MFD_CLOEXEC | MFD_ALLOW_SEALING) };
    }
    let fd = check(fd, || "memfd_create".into())? as RawFd;
    let mem = crate::fd::own(fd);
    let mut src = std::fs::File::open(path).map_err(|e| crate::SysError::new(format!("open {path}"), e.raw_os_error().unwrap_or(libc::EIO)))?;
    let mut dst = std::fs::File::from(mem);
    std::io::copy(&mut src, &mut dst).map_err(|e| crate::SysError::new(format!("copy {path} into memory"), e.raw_os_error().unwrap_or(libc::EIO)))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    check(unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&dst), libc::F_ADD_SEALS, seals) }, || "seal the runtime copy".into())?;
    Ok(std::os::fd::IntoRawFd::into_raw_fd(dst))
}
