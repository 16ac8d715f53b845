//! `tsbox-sandbox`: one per container. It is the parent and child subreaper of every
//! process of its container, creates them with clone3, reaps them, and reports exits over
//! its control socket (docs/architecture.md); a runc-compatible caller that asks to reap
//! a process itself gets it instead (server::CallerReaps).
//!
//!   tsbox-sandbox --socket PATH     serve; prints "ready" on stdout once listening
//!   tsbox-sandbox --echo-plan KIND  a container or exec plan from stdin back to stdout, as read
//!   tsbox-sandbox --version

mod hooks;
mod init;
mod inroot;
mod mnt;
mod oom;
mod plan;
mod seccomp;
mod server;
mod sync;

use server::{Client, Sandbox};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;
use tsbox_sys::fd::{own, sockaddr_un};
use tsbox_sys::{check, Result};

fn listen(path: &str) -> Result<OwnedFd> {
    let fd = own(check(unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) }, || "socket AF_UNIX".into())?);
    let _ = std::fs::remove_file(path);
    let addr = sockaddr_un(path)?;
    check(
        unsafe { libc::bind(fd.as_raw_fd(), &addr as *const libc::sockaddr_un as *const libc::sockaddr, std::mem::size_of::<libc::sockaddr_un>() as u32) },
        || format!("bind {path}"),
    )?;
    let cpath = tsbox_sys::sys::cstring(path);
    check(unsafe { libc::chmod(cpath.as_ptr(), 0o600) }, || format!("chmod {path}"))?;
    check(unsafe { libc::listen(fd.as_raw_fd(), 64) }, || format!("listen {path}"))?;
    Ok(fd)
}

fn sigchld_fd() -> Result<OwnedFd> {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        check(libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()), || "block SIGCHLD".into())?;
        Ok(own(check(libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK), || "signalfd SIGCHLD".into())?))
    }
}

const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

/// Marks every fd from `first` on close-on-exec, so no descriptor a parent leaked to us
/// can reach a container.
pub fn cloexec_from(first: libc::c_uint) {
    unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
}

fn serve(socket: &str) -> Result<()> {
    cloexec_from(3);
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, || "prctl PR_SET_CHILD_SUBREAPER".into())?;
    let sigfd = sigchld_fd()?;
    let listener = listen(socket)?;
    // Tell whoever started us that the socket accepts connections, then let go of stdout.
    println!("ready");
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
    }

    let mut sandbox = Sandbox::new();
    let mut clients: Vec<Client> = Vec::new();
    while !sandbox.shutdown {
        let mut pfds = vec![
            libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: sigfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        pfds.extend(clients.iter().map(|c| libc::pollfd { fd: c.raw(), events: libc::POLLIN, revents: 0 }));
        let ooms = sandbox.oom_fds();
        let first_oom = pfds.len();
        pfds.extend(ooms.iter().map(|(fd, _)| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 }));
        let foreign = sandbox.foreign_pidfds();
        let first_foreign = pfds.len();
        pfds.extend(foreign.iter().map(|fd| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 }));
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if tsbox_sys::last_errno() == libc::EINTR {
                continue;
            }
            return Err(tsbox_sys::SysError::last("poll"));
        }
        // OOM before exits: on v1 an OOM kill's notification is ready no later than the
        // SIGCHLD of its victim, so in the same round the oom event goes out first (on v2,
        // reap looks at the count itself).
        for (i, (_, id)) in ooms.iter().enumerate() {
            if pfds[first_oom + i].revents != 0 {
                let ev = sandbox.oom_fired(id);
                broadcast(&mut clients, ev.into_iter().collect());
            }
        }
        // Clients are only marked dead while pfds indexes into `clients`, and dropped at
        // the end of the round, so the two stay in step.
        if pfds[1].revents != 0 {
            let mut info = [0u8; 128];
            while unsafe { libc::read(sigfd.as_raw_fd(), info.as_mut_ptr() as *mut libc::c_void, info.len()) } > 0 {}
            broadcast(&mut clients, sandbox.reap());
        }
        // Processes whose callers reap them (see server::CallerReaps): a readable pidfd is an exit.
        for (i, fd) in foreign.iter().enumerate() {
            if pfds[first_foreign + i].revents != 0 {
                broadcast(&mut clients, sandbox.foreign_exited(*fd));
            }
        }
        let mut handled = false;
        for (i, pfd) in pfds.iter().enumerate().take(first_oom).skip(2) {
            if pfd.revents == 0 {
                continue;
            }
            let client = &mut clients[i - 2];
            match client.read_lines() {
                None => client.alive = false,
                Some(lines) => {
                    for line in lines {
                        handled = true;
                        let answer = sandbox.handle(client, &line);
                        client.send(&answer);
                    }
                }
            }
        }
        if handled {
            // A create's plan and its parse are freed by now: give the pages back, or every
            // idle sandbox keeps the high-water mark of its busiest request.
            unsafe { libc::malloc_trim(0) };
        }
        if pfds[0].revents != 0 {
            let fd = unsafe { libc::accept4(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) };
            if fd >= 0 {
                clients.push(Client::new(own(fd)));
            }
        }
        // Exits that happened while we were busy with a request.
        broadcast(&mut clients, sandbox.reap());
        clients.retain(|c| c.alive);
    }
    let _ = std::fs::remove_file(socket);
    Ok(())
}

fn broadcast(clients: &mut [Client], events: Vec<serde_json::Value>) {
    for ev in events {
        for c in clients.iter_mut().filter(|c| c.alive) {
            c.send(&ev);
        }
    }
}

fn echo_plan(kind: &str) -> std::result::Result<(), serde_json::Error> {
    let out = if kind == "container" {
        serde_json::to_string(&serde_json::from_reader::<_, plan::ContainerPlan>(std::io::stdin())?)?
    } else {
        serde_json::to_string(&serde_json::from_reader::<_, plan::ExecPlan>(std::io::stdin())?)?
    };
    println!("{out}");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["--version"] | ["-v"] => {
            println!("tsbox-sandbox {}", tsbox_sys::VERSION);
            ExitCode::SUCCESS
        }
        ["--socket", path] => match serve(path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tsbox-sandbox: {e}");
                ExitCode::FAILURE
            }
        },
        // The plan contract's test seam: a plan on stdin, as this process reads it, back on
        // stdout (test/unit/plan-contract.test.ts).
        ["--echo-plan", kind @ ("container" | "exec")] => match echo_plan(kind) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tsbox-sandbox: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: tsbox-sandbox --socket PATH | --version | --echo-plan container|exec");
            ExitCode::from(2)
        }
    }
}
