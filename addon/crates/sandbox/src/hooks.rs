//! createContainer and startContainer hooks: they run in the container's namespaces, so
//! the container's init (this process, before execve) runs them itself.

use crate::plan::HookPlan;
use std::os::fd::AsRawFd;
use tsbox_sys::sys::cstring;
use tsbox_sys::{check, fd::own, Result, SysError};

pub fn run_all(kind: &str, hooks: &[HookPlan], state: &str) -> Result<()> {
    for hook in hooks {
        run(kind, hook, state)?;
    }
    Ok(())
}

fn run(kind: &str, hook: &HookPlan, state: &str) -> Result<()> {
    let step = |what: &str| format!("{kind} hook {}: {what}", hook.path);
    let mut pipe = [0; 2];
    check(unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) }, || step("pipe")).map_err(|e| e.with_field(hook.field.clone()))?;
    let (rd, wr) = (own(pipe[0]), own(pipe[1]));
    let path = cstring(&hook.path);
    let args: Vec<_> = if hook.args.is_empty() { vec![cstring(&hook.path)] } else { hook.args.iter().map(|a| cstring(a)).collect() };
    let env: Vec<_> = hook.env.iter().map(|e| cstring(e)).collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());

    let pid = check(unsafe { libc::fork() }, || step("fork")).map_err(|e| e.with_field(hook.field.clone()))?;
    if pid == 0 {
        unsafe {
            libc::dup2(rd.as_raw_fd(), 0);
            libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    drop(rd);
    // The hook may not read its stdin at all: EPIPE is not an error, and SIGPIPE (default
    // again in a container's init) must not kill us for it.
    let bytes = state.as_bytes();
    unsafe {
        let old = libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::write(wr.as_raw_fd(), bytes.as_ptr() as *const libc::c_void, bytes.len());
        libc::signal(libc::SIGPIPE, old);
    }
    drop(wr);

    let pidfd = tsbox_sys::sys::pidfd_open(pid).map_err(|e| e.with_field(hook.field.clone()))?;
    let pidfd = own(pidfd);
    let timeout_ms = hook.timeout.map(|s| s as i32 * 1000).unwrap_or(-1);
    let mut pfd = libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ready = loop {
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n >= 0 || tsbox_sys::last_errno() != libc::EINTR {
            break n;
        }
    };
    if ready == 0 {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if ready == 0 {
        return Err(SysError::new(step(&format!("timed out after {}s", hook.timeout.unwrap_or(0))), libc::ETIMEDOUT).with_field(hook.field.clone()));
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return Ok(());
    }
    let how = if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else {
        format!("killed by signal {}", libc::WTERMSIG(status))
    };
    Err(SysError::new(step(&how), 0).with_field(hook.field.clone()))
}
