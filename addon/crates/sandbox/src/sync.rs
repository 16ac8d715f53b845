//! The private channel between tsbox-sandbox and a process it is setting up (a
//! SOCK_SEQPACKET socketpair: one JSON message per packet). The child's end is
//! close-on-exec, so a successful execve shows up in the parent as end-of-file.

use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use tsbox_sys::{check, fd::own, Result, SysError};

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub enum ToChild {
    /// Maps are written and cgroups joined; `pid` is the child's pid as the host sees it.
    Go { pid: i32 },
    /// createRuntime hooks are done.
    Continue,
    /// Release the start gate.
    Start,
}

#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub enum FromChild {
    /// Paused before pivot_root so the engine can run createRuntime hooks.
    Hooks,
    /// Set up and waiting at the start gate.
    Ready,
    /// A first process forked the container's init or an exec'd process, whose pid (as
    /// tsbox-sandbox sees it) this is; its pidfd comes attached. The first process opened
    /// it while still its parent, so it names that process whoever reaps it later.
    Spawned {
        pid: i32,
    },
    Error {
        step: String,
        errno: i32,
        field: String,
    },
}

/// How long tsbox-sandbox waits by default for any one answer from a process it sets
/// up, beyond the timeouts of its hooks: a child stuck in setup must not hold the
/// sandbox's loop (and every other request of the container) for ever.
pub const SETUP_DEADLINE_SECS: u64 = 60;

/// The channel: (tsbox-sandbox's end, whose reads give up after `deadline_secs`, the
/// child's end, which waits as long as the container is not started).
pub fn pair(deadline_secs: u64) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    check(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }, || {
        "socketpair for the setup channel".into()
    })?;
    let (parent, child) = (own(fds[0]), own(fds[1]));
    let tv = libc::timeval { tv_sec: deadline_secs as libc::time_t, tv_usec: 0 };
    check(
        unsafe {
            libc::setsockopt(
                parent.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        },
        || "set the setup channel's deadline".into(),
    )?;
    Ok((parent, child))
}

pub fn send<T: Serialize>(fd: RawFd, msg: &T) -> Result<()> {
    send_fds(fd, msg, &[])
}

/// Sends `msg` with one fd attached (SCM_RIGHTS), as `Spawned` carries the new process's pidfd.
pub fn send_with_fd<T: Serialize>(fd: RawFd, msg: &T, pass: RawFd) -> Result<()> {
    send_fds(fd, msg, &[pass])
}

fn send_fds<T: Serialize>(fd: RawFd, msg: &T, fds: &[RawFd]) -> Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(|e| SysError::new(format!("encode setup message: {e}"), libc::EINVAL))?;
    tsbox_sys::fd::send_with_fds(fd, &bytes, fds).map(|_| ()).map_err(|mut e| {
        e.step = "send on setup channel".into();
        e
    })
}

/// Blocks for the next message; None when the other side closed its end.
pub fn recv<T: for<'de> Deserialize<'de>>(fd: RawFd) -> Result<Option<T>> {
    Ok(recv_with_fds(fd)?.map(|(msg, _)| msg))
}

/// Blocks for the next message and the fds that came with it; None when the other side
/// closed its end.
pub fn recv_with_fds<T: for<'de> Deserialize<'de>>(fd: RawFd) -> Result<Option<(T, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut fds = Vec::new();
    let n = tsbox_sys::fd::recv_with_fds(fd, &mut buf, &mut fds).map_err(|e| {
        if e.errno == libc::EAGAIN {
            SysError::new("the process being set up did not answer in time (setup deadline)", libc::ETIMEDOUT)
        } else {
            e
        }
    })?;
    if n == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..n]).map_err(|e| SysError::new(format!("decode setup message: {e}"), libc::EPROTO))?;
    Ok(Some((msg, fds)))
}

pub fn report(fd: &OwnedFd, e: &SysError) {
    let _ = send(fd.as_raw_fd(), &FromChild::Error { step: e.step.clone(), errno: e.errno, field: e.field.clone() });
}
