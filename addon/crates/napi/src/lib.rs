//! The napi-rs addon loaded by the Node daemon and CLI: syscalls Node lacks, none of
//! which forks (docs/architecture.md). Errors cross as "<ERRNO>|<step>: <ERRNO>"; the TypeScript
//! wrapper (src/native/addon.ts) turns that into an Error whose `code` is the errno name,
//! the way Node's own fs errors look.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use std::os::fd::IntoRawFd;
use tsbox_sys::SysError;

fn js_err(e: SysError) -> Error {
    Error::new(Status::GenericFailure, format!("{}|{}", e.errno_name(), e))
}

/// Version of the native code, compared with `tsbox-sandbox`'s.
#[napi]
pub fn version() -> String {
    tsbox_sys::VERSION.to_string()
}

/// Connects a unix stream socket (close-on-exec) and returns its fd.
#[napi]
pub fn unix_connect(path: String) -> Result<i32> {
    tsbox_sys::fd::unix_connect(&path).map(|fd| fd.into_raw_fd()).map_err(js_err)
}

/// sendmsg with SCM_RIGHTS; returns the bytes written (the fds go with the first byte).
#[napi]
pub fn send_with_fds(sock: i32, data: Buffer, fds: Vec<i32>) -> Result<u32> {
    tsbox_sys::fd::send_with_fds(sock, &data, &fds).map(|n| n as u32).map_err(js_err)
}

/// One device rule as the engine passes it: linux.resources.devices, wildcards as null.
#[napi(object)]
pub struct DeviceRule {
    pub allow: bool,
    /// "a", "b" or "c".
    pub kind: String,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Letters of "rwm".
    pub access: String,
}

/// Replaces the device filter (a BPF_PROG_TYPE_CGROUP_DEVICE program) of a cgroup v2
/// directory with one built from `rules` (last matching rule decides; none: deny).
#[napi]
pub fn set_device_filter(cgroup_dir: String, rules: Vec<DeviceRule>) -> Result<()> {
    let rules = rules
        .into_iter()
        .map(|r| {
            let kind = r.kind.chars().next().unwrap_or('a');
            let access = tsbox_sys::devices::access_bits(&r.access)?;
            Ok(tsbox_sys::devices::DeviceRule { allow: r.allow, kind, major: r.major, minor: r.minor, access })
        })
        .collect::<tsbox_sys::Result<Vec<_>>>()
        .map_err(js_err)?;
    tsbox_sys::devices::set_filter(&cgroup_dir, &rules).map_err(js_err)
}

/// A sealed in-memory copy of an executable (close-on-exec fd), run as
/// /proc/self/fd/N so that no container can reach or rewrite the file on the host.
#[napi]
pub fn sealed_copy(path: String) -> Result<i32> {
    tsbox_sys::sys::sealed_copy(&path).map_err(js_err)
}

/// A connected pair of unix stream sockets, both close-on-exec.
#[napi]
pub fn socketpair() -> Result<Vec<i32>> {
    let mut fds = [0; 2];
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0 {
        return Err(js_err(SysError::last("socketpair")));
    }
    Ok(fds.to_vec())
}

/// Receives one fd sent with SCM_RIGHTS, without blocking: EAGAIN when none is queued.
#[napi]
pub fn recv_fd(sock: i32) -> Result<i32> {
    let mut fds = Vec::new();
    let mut buf = [0u8; 256];
    tsbox_sys::fd::set_nonblocking(sock, true).map_err(js_err)?;
    let n = tsbox_sys::fd::recv_with_fds(sock, &mut buf, &mut fds).map_err(js_err)?;
    match fds.into_iter().next() {
        Some(fd) => Ok(fd.into_raw_fd()),
        None if n == 0 => Err(js_err(SysError::new("recv fd: peer closed without sending one", libc::EPIPE))),
        None => Err(js_err(SysError::new("recv fd: a message arrived without an fd", libc::EPROTO))),
    }
}

/// mount(2) in the caller's mount namespace (the shim mounts containerd's rootfs list).
#[napi]
pub fn mount(source: String, target: String, fstype: String, flags: u32, data: String) -> Result<()> {
    let c = |s: &str| tsbox_sys::sys::cstring(s);
    let (src, tgt, fs, dat) = (c(&source), c(&target), c(&fstype), c(&data));
    let ret = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            if fstype.is_empty() { std::ptr::null() } else { fs.as_ptr() },
            flags as libc::c_ulong,
            if data.is_empty() { std::ptr::null() } else { dat.as_ptr() as *const libc::c_void },
        )
    };
    if ret != 0 {
        return Err(js_err(SysError::last(format!("mount {fstype} {source} on {target}"))));
    }
    Ok(())
}

/// umount2(2); flags as the kernel takes them (MNT_DETACH = 2).
#[napi]
pub fn umount2(target: String, flags: i32) -> Result<()> {
    let t = tsbox_sys::sys::cstring(&target);
    if unsafe { libc::umount2(t.as_ptr(), flags) } != 0 {
        return Err(js_err(SysError::last(format!("umount {target}"))));
    }
    Ok(())
}

/// Clears or sets O_NONBLOCK on an open file description (a FIFO opened without blocking
/// the event loop, then handed to a container that expects blocking I/O).
#[napi]
pub fn set_nonblocking(fd: i32, on: bool) -> Result<()> {
    tsbox_sys::fd::set_nonblocking(fd, on).map_err(js_err)
}

/// dup(2), close-on-exec: a second fd number for the same open file (libuv wants one
/// handle per fd, and a pty master is both read and written).
#[napi]
pub fn dup(fd: i32) -> Result<i32> {
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if r < 0 {
        return Err(js_err(SysError::last("dup")));
    }
    Ok(r)
}

/// flock(LOCK_EX | LOCK_NB): true when taken, false when another process holds it.
#[napi]
pub fn flock_try(fd: i32) -> Result<bool> {
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    match tsbox_sys::last_errno() {
        libc::EWOULDBLOCK => Ok(false),
        _ => Err(js_err(SysError::last("flock"))),
    }
}

/// A pipe, both ends close-on-exec: [read, write].
#[napi]
pub fn pipe() -> Result<Vec<i32>> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(js_err(SysError::last("pipe2")));
    }
    Ok(fds.to_vec())
}

/// TIOCSWINSZ on a pty.
#[napi]
pub fn set_winsize(fd: i32, cols: u32, rows: u32) -> Result<()> {
    let ws = libc::winsize { ws_row: rows as u16, ws_col: cols as u16, ws_xpixel: 0, ws_ypixel: 0 };
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(js_err(SysError::last("ioctl TIOCSWINSZ")));
    }
    Ok(())
}

pub struct FlockTask {
    fd: i32,
}

impl Task for FlockTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> Result<Self::Output> {
        loop {
            if unsafe { libc::flock(self.fd, libc::LOCK_EX) } == 0 {
                return Ok(());
            }
            let e = SysError::last("flock LOCK_EX");
            if e.errno != libc::EINTR {
                return Err(js_err(e));
            }
        }
    }

    fn resolve(&mut self, _env: Env, _output: Self::Output) -> Result<Self::JsValue> {
        Ok(())
    }
}

/// Takes an exclusive flock on a libuv worker thread, so waiting never blocks the loop.
/// The lock is released by closing the fd.
#[napi]
pub fn flock_exclusive(fd: i32) -> AsyncTask<FlockTask> {
    AsyncTask::new(FlockTask { fd })
}

pub struct RemoveCgroupTask {
    created: Vec<String>,
}

impl Task for RemoveCgroupTask {
    type Output = Vec<String>;
    type JsValue = Vec<String>;

    fn compute(&mut self) -> Result<Self::Output> {
        Ok(tsbox_sys::cgroup_teardown::remove_dirs(&self.created))
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> Result<Self::JsValue> {
        Ok(output)
    }
}

/// Removes the cgroup directories a create made (deepest last in `created`), retrying busy
/// ones on a libuv worker thread; resolves with those that could not be removed.
#[napi(ts_return_type = "Promise<string[]>")]
pub fn remove_cgroup_dirs(created: Vec<String>) -> AsyncTask<RemoveCgroupTask> {
    AsyncTask::new(RemoveCgroupTask { created })
}

/// Removes the ledger's parent cgroups above `leaves` that nothing uses any more.
#[napi]
pub fn release_cgroup_parents(ledger: String, leaves: Vec<String>) -> Result<()> {
    tsbox_sys::cgroup_teardown::release_parents(std::path::Path::new(&ledger), &leaves)
        .map_err(|e| js_err(SysError::new(format!("release the parent cgroups in {ledger}"), e.raw_os_error().unwrap_or(libc::EIO))))
}
