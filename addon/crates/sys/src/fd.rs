//! File descriptors: an owning wrapper and SCM_RIGHTS passing over unix sockets.

use crate::{check, Result, SysError};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// Takes ownership of a raw fd returned by a syscall.
pub fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass fds they just received from the kernel and nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

pub fn set_nonblocking(fd: RawFd, on: bool) -> Result<()> {
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) }, || format!("fcntl F_GETFL {fd}"))?;
    let flags = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }, || format!("fcntl F_SETFL {fd}"))?;
    Ok(())
}

/// Most fds one message carries (stdin, stdout, stderr, with room to spare).
pub const MAX_FDS: usize = 16;

/// Sends `data` with `fds` attached (SCM_RIGHTS). Returns the bytes sent; the fds travel
/// with the first byte, so a short write still delivered all of them.
pub fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(SysError::new(format!("send {} fds (at most {MAX_FDS})", fds.len()), libc::E2BIG));
    }
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    let mut control = vec![0u8; space.max(1)];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space as _;
        // SAFETY: control is sized by CMSG_SPACE for exactly these fds.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg) as *mut RawFd, fds.len());
        }
    }
    loop {
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = SysError::last("sendmsg on control socket");
        if e.errno != libc::EINTR {
            return Err(e);
        }
    }
}

/// Reads into `buf`, collecting any fds that arrived (close-on-exec) into `fds`.
/// Returns the bytes read; 0 means the peer closed.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    let n = loop {
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = SysError::last("recvmsg on control socket");
        if e.errno != libc::EINTR {
            return Err(e);
        }
    };
    // SAFETY: walking the control buffer the kernel just filled, with the libc macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let count = payload / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                for i in 0..count {
                    fds.push(own(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    // More fds were sent than fit: the kernel closed the rest, so the message no longer
    // says what its sender meant. Refuse it (the fds that did arrive are closed too).
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        fds.clear();
        return Err(SysError::new(format!("recvmsg: more than {MAX_FDS} fds in one message"), libc::EMSGSIZE));
    }
    Ok(n)
}

/// A connected unix stream socket (close-on-exec).
pub fn unix_connect(path: &str) -> Result<OwnedFd> {
    let fd = own(check(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) }, || "socket AF_UNIX".into())?);
    let addr = sockaddr_un(path)?;
    check(
        unsafe { libc::connect(fd.as_raw_fd(), &addr as *const libc::sockaddr_un as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_un>() as u32) },
        || format!("connect {path}"),
    )?;
    Ok(fd)
}

pub fn sockaddr_un(path: &str) -> Result<libc::sockaddr_un> {
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(SysError::new(format!("socket path {path} is longer than 107 bytes"), libc::ENAMETOOLONG));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(addr)
}

/// Releases ownership without closing (the fd goes to a child or to Node).
pub fn leak(fd: OwnedFd) -> RawFd {
    fd.into_raw_fd()
}
