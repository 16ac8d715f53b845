//! OOM kills of a container's cgroup, noticed here (this process already polls) and
//! reported as `oom` events before the victim's exit is reaped in the same round.
//!   v1: an eventfd registered on memory.oom_control through cgroup.event_control;
//!   v2: inotify on memory.events, reporting when oom_kill grows.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use tsbox_sys::{check, fd::own, sys::cstring, Result, SysError};

pub enum OomWatch {
    V1 { efd: OwnedFd, _control: OwnedFd },
    V2 { ifd: OwnedFd, events: String, last: u64 },
}

fn oom_kills(events: &str) -> u64 {
    std::fs::read_to_string(events).ok().and_then(|t| t.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|v| v.trim().parse().ok()))).unwrap_or(0)
}

impl OomWatch {
    pub fn new(version: u8, dir: &str) -> Result<OomWatch> {
        if version == 1 {
            let efd = own(check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) }, || "eventfd for OOM".into())?);
            let path = format!("{dir}/memory.oom_control");
            let c = cstring(&path);
            let control = own(check(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }, || format!("open {path}"))?);
            let reg = format!("{dir}/cgroup.event_control");
            std::fs::write(&reg, format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()))
                .map_err(|e| SysError::new(format!("write {reg}"), e.raw_os_error().unwrap_or(libc::EIO)))?;
            return Ok(OomWatch::V1 { efd, _control: control });
        }
        let ifd = own(check(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) }, || "inotify_init1".into())?);
        let events = format!("{dir}/memory.events");
        let c = cstring(&events);
        check(unsafe { libc::inotify_add_watch(ifd.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) }, || format!("inotify {events}"))?;
        let last = oom_kills(&events);
        Ok(OomWatch::V2 { ifd, events, last })
    }

    pub fn fd(&self) -> RawFd {
        match self {
            OomWatch::V1 { efd, .. } => efd.as_raw_fd(),
            OomWatch::V2 { ifd, .. } => ifd.as_raw_fd(),
        }
    }

    /// Drains the notification; true when it means a new OOM kill.
    pub fn fired(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        match self {
            OomWatch::V1 { efd, .. } => {
                let n = unsafe { libc::read(efd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, 8) };
                n == 8 && u64::from_ne_bytes(buf[..8].try_into().unwrap_or([0; 8])) > 0
            }
            OomWatch::V2 { ifd, events, last } => {
                while unsafe { libc::read(ifd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len()) } > 0 {}
                let now = oom_kills(events);
                let grew = now > *last;
                *last = now;
                grew
            }
        }
    }
}
