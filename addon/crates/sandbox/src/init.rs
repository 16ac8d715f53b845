//! What runs in a new container process between clone3 and execve: namespaces, the root
//! filesystem, the process's identity and privileges, and the start gate. Single-threaded
//! and never returning: on any failure it reports {step, errno, field} to tsbox-sandbox
//! over the setup channel and exits.

use crate::inroot::{self, Root};
use crate::plan::{ContainerPlan, MountPlan, ProcessPlan};
use crate::sync::{self, FromChild, ToChild};
use crate::{hooks, mnt, seccomp};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use tsbox_sys::sys::{cstring, pivot_root};
use tsbox_sys::{check, fd::own, Result, SysError};

fn ok(ret: libc::c_int, step: impl FnOnce() -> String) -> Result<()> {
    check(ret, step).map(|_| ())
}

/// Signal state the container must start with: nothing blocked, nothing ignored
/// (Rust ignores SIGPIPE in tsbox-sandbox, and ignored signals survive execve).
pub fn reset_signals() {
    unsafe {
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/**
 * First thing in a new child: drop every descriptor of tsbox-sandbox (listener, clients,
 * other containers' pidfds and stdio) but its own, so nothing in the container — even
 * before execve, even through ptrace or pidfd_getfd — can reach them; and not dumpable
 * until execve (which resets that), so no container process can ptrace or read it.
 */
pub fn isolate_child(keep: &[RawFd]) {
    // close_range over the gaps between the fds kept: no /proc needed, nothing missed.
    let mut kept: Vec<libc::c_uint> = keep.iter().filter(|&&fd| fd > 2).map(|&fd| fd as libc::c_uint).collect();
    kept.sort_unstable();
    let mut from: libc::c_uint = 3;
    for fd in kept.into_iter().chain(std::iter::once(libc::c_uint::MAX)) {
        if fd > from {
            unsafe { libc::syscall(libc::SYS_close_range, from, fd - 1, 0) };
        }
        from = fd.saturating_add(1);
    }
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

fn wait_for(sync_fd: RawFd, what: &str) -> Result<ToChild> {
    match sync::recv::<ToChild>(sync_fd)? {
        Some(m) => Ok(m),
        None => Err(SysError::new(format!("tsbox-sandbox went away while waiting for {what}"), libc::EPIPE)),
    }
}

/// Entry point of a container's first process, cloned by tsbox-sandbox in its own pid
/// namespace (only with CLONE_NEWUSER, so that the user namespace, new or joined, owns
/// every namespace created after it). It enters or creates the container's namespaces and
/// forks the init into its pid namespace. A new pid namespace is empty, so the init may
/// be forked right away and set up the rootfs itself; a joined one (a pod's) already has
/// processes that could watch, so this process sets up and enters the rootfs first, and
/// the init only mounts /proc (which must belong to its pid namespace).
pub fn container_init(plan: &ContainerPlan, sync_fd: OwnedFd, stdio: Vec<OwnedFd>) -> ! {
    reset_signals();
    if let Err(e) = container_setup(plan, sync_fd.as_raw_fd(), stdio) {
        sync::report(&sync_fd, &e);
    }
    unsafe { libc::_exit(1) }
}

fn setns_path(path: &str, flag: u64, field: &str) -> Result<()> {
    let fd = open(path, libc::O_RDONLY).map_err(|e| e.with_field(field))?;
    ok(unsafe { libc::setns(fd.as_raw_fd(), flag as libc::c_int) }, || format!("setns {path}")).map_err(|e| e.with_field(field))
}

fn container_setup(plan: &ContainerPlan, sync_fd: RawFd, stdio: Vec<OwnedFd>) -> Result<()> {
    match wait_for(sync_fd, "the go signal")? {
        ToChild::Go { .. } => {}
        _ => return Err(SysError::new("unexpected message on setup channel", libc::EPROTO)),
    }
    if plan.clone_flags & libc::CLONE_NEWUSER as u64 != 0 {
        // Maps are written; become the namespace's root for the rest of the setup.
        ok(unsafe { libc::setresgid(0, 0, 0) }, || "setresgid 0 in the new user namespace".into())?;
        ok(unsafe { libc::setresuid(0, 0, 0) }, || "setresuid 0 in the new user namespace".into())?;
    }
    let user = libc::CLONE_NEWUSER as u64;
    let pid = libc::CLONE_NEWPID as u64;
    for ns in plan.join_namespaces.iter().filter(|n| n.flag == user) {
        setns_path(&ns.path, ns.flag, &ns.field)?;
        // Our ids are the host's, unmapped in there: become the namespace's root.
        ok(unsafe { libc::setresgid(0, 0, 0) }, || "setresgid 0 in the joined user namespace".into()).map_err(|e| e.with_field(ns.field.clone()))?;
        ok(unsafe { libc::setresuid(0, 0, 0) }, || "setresuid 0 in the joined user namespace".into()).map_err(|e| e.with_field(ns.field.clone()))?;
    }
    let create = plan.clone_flags & !(user | pid);
    if create != 0 {
        ok(unsafe { libc::unshare(create as libc::c_int) }, || format!("unshare namespaces {create:#x}")).map_err(|e| e.with_field("linux.namespaces"))?;
    }
    if plan.unshare_cgroup_ns {
        // After tsbox-sandbox moved us into the container's cgroup: that becomes its root.
        ok(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }, || "unshare cgroup namespace".into()).map_err(|e| e.with_field("linux.namespaces"))?;
    }
    for ns in plan.join_namespaces.iter().filter(|n| n.flag != user && n.flag != pid) {
        setns_path(&ns.path, ns.flag, &ns.field)?;
    }
    if let Some(h) = &plan.hostname {
        ok(unsafe { libc::sethostname(h.as_ptr() as *const libc::c_char, h.len()) }, || format!("sethostname {h}")).map_err(|e| e.with_field("hostname"))?;
    }
    if let Some(d) = &plan.domainname {
        ok(unsafe { libc::setdomainname(d.as_ptr() as *const libc::c_char, d.len()) }, || format!("setdomainname {d}"))
            .map_err(|e| e.with_field("domainname"))?;
    }
    let mut state = plan.hook_state.clone();
    match plan.join_namespaces.iter().find(|n| n.flag == pid) {
        None => {
            if plan.clone_flags & pid != 0 {
                ok(unsafe { libc::unshare(libc::CLONE_NEWPID) }, || "unshare pid namespace".into()).map_err(|e| e.with_field("linux.namespaces"))?;
            }
            state["pid"] = spawn_init(sync_fd)?.into();
            let deferred = prepare_rootfs(plan, false)?;
            before_pivot(plan, sync_fd, &state)?;
            enter_rootfs(plan)?;
            run_init(plan, sync_fd, stdio, state, deferred)
        }
        Some(ns) => {
            // Opened now: after pivot_root its path would be looked up in the container.
            let pid_ns = open(&ns.path, libc::O_RDONLY).map_err(|e| e.with_field(ns.field.clone()))?;
            let deferred = prepare_rootfs(plan, true)?;
            // Hooks until pivot_root see this process: it has every namespace but the pid one.
            state["pid"] = unsafe { libc::getpid() }.into();
            before_pivot(plan, sync_fd, &state)?;
            enter_rootfs(plan)?;
            ok(unsafe { libc::setns(pid_ns.as_raw_fd(), libc::CLONE_NEWPID) }, || format!("setns {}", ns.path)).map_err(|e| e.with_field(ns.field.clone()))?;
            drop(pid_ns);
            state["pid"] = spawn_init(sync_fd)?.into();
            run_init(plan, sync_fd, stdio, state, deferred)
        }
    }
}

/// Forks the container's init. This process tells tsbox-sandbox the init's pid and
/// exits; the init carries on and learns its own pid as the host sees it.
fn spawn_init(sync_fd: RawFd) -> Result<i32> {
    let mut p = [0; 2];
    ok(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, || "pipe".into())?;
    let (r, w) = (own(p[0]), own(p[1]));
    match tsbox_sys::sys::clone3(0)? {
        tsbox_sys::sys::Forked::Child => {
            drop(w);
            let mut buf = [0u8; 4];
            let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, 4) };
            if n != 4 {
                return Err(SysError::new("the container's first process went away", libc::EPIPE));
            }
            Ok(i32::from_ne_bytes(buf))
        }
        tsbox_sys::sys::Forked::Parent { pid, pidfd } => {
            // Spawned goes out before the child may say anything on the same channel
            // (it waits for the pipe): tsbox-sandbox must learn the init's pid first, or
            // it would take this process's exit for the container's.
            let _ = sync::send_with_fd(sync_fd, &FromChild::Spawned { pid }, pidfd);
            unsafe {
                libc::close(pidfd);
                libc::write(w.as_raw_fd(), pid.to_ne_bytes().as_ptr() as *const libc::c_void, 4);
                libc::_exit(0)
            }
        }
    }
}

/// createRuntime hooks (run by the engine while we wait) and createContainer hooks.
fn before_pivot(plan: &ContainerPlan, sync_fd: RawFd, state: &serde_json::Value) -> Result<()> {
    if plan.pause_for_hooks {
        sync::send(sync_fd, &FromChild::Hooks)?;
        match wait_for(sync_fd, "createRuntime hooks")? {
            ToChild::Continue => {}
            _ => return Err(SysError::new("unexpected message on setup channel", libc::EPROTO)),
        }
    }
    let mut state = state.clone();
    state["status"] = "created".into();
    hooks::run_all("createContainer", &plan.hooks.create_container, &state.to_string())
}

/// The init, inside the container's root and every namespace: the rest of the rootfs,
/// the process's identity, the start gate, execve.
fn run_init(plan: &ContainerPlan, sync_fd: RawFd, stdio: Vec<OwnedFd>, mut state: serde_json::Value, deferred: Vec<Deferred>) -> Result<()> {
    let root = Root::open("/")?;
    for d in deferred {
        d.mount(&root)?;
    }
    finish_rootfs(plan, &root)?;
    // Close-on-exec, but a pod sandbox's init never execs.
    drop(root);
    let filter = match &plan.process.seccomp {
        Some(s) => Some(seccomp::compile(s)?),
        None => None,
    };
    let early_seccomp = filter.is_some() && !plan.process.no_new_privileges;
    setup_stdio(&plan.process, stdio)?;
    if plan.pause {
        hide_args_and_env("/pause")?;
    }
    let home = setup_process(&plan.process, if early_seccomp { filter.as_ref() } else { None })?;
    let program = if plan.pause { None } else { Some(Program::prepare(&plan.process, home)?) };

    sync::send(sync_fd, &FromChild::Ready)?;
    match wait_for(sync_fd, "start")? {
        ToChild::Start => {}
        _ => return Err(SysError::new("unexpected message on setup channel", libc::EPROTO)),
    }
    state["status"] = "running".into();
    hooks::run_all("startContainer", &plan.hooks.start_container, &state.to_string())?;
    if let (Some(f), false) = (&filter, early_seccomp) {
        seccomp::load(f)?;
    }
    match program {
        Some(program) => program.exec(),
        None => pause(sync_fd),
    }
}

/**
 * A pod sandbox's init, in place of a pause binary: it has no image to run one from. It is
 * this process as cloned from tsbox-sandbox, so it hides what it inherited: its
 * descriptors were closed at clone (isolate_child) but the setup channel, which goes now;
 * it stays non-dumpable (no execve resets that), so no container process can ptrace it
 * or read its memory or root; its command line, which held the host path of
 * tsbox-sandbox's socket, reads `/pause` (then NULs to the old length), and the host
 * environment it inherited is gone from /proc/PID/environ. Like the pause program it
 * reaps whatever is reparented to it and exits 0 on SIGTERM or SIGINT.
 */
fn pause(sync_fd: RawFd) -> ! {
    unsafe { libc::close(sync_fd) };
    unsafe {
        let name = b"pause\0";
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut set, sig);
        }
        // Blocked, these are taken by sigwaitinfo; a pid namespace's init would otherwise
        // never see signals from inside its namespace (their default action is ignored).
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            match libc::sigwaitinfo(&set, &mut info) {
                libc::SIGCHLD => while libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) > 0 {},
                libc::SIGTERM | libc::SIGINT => libc::_exit(0),
                _ => {}
            }
        }
    }
}

/// Overwrites this process's argument area (what /proc/PID/cmdline shows) with `text`
/// and NULs (`ps` shows `text`), and its environment (/proc/PID/environ) with NULs. Where
/// they are comes from fields 48–51 of /proc/self/stat: the pod's own procfs, mounted in
/// its own empty root by now.
fn hide_args_and_env(text: &str) -> Result<()> {
    let step = "read /proc/self/stat to hide the inherited argv and environment";
    let stat = std::fs::read_to_string("/proc/self/stat").map_err(|e| SysError::new(step, e.raw_os_error().unwrap_or(libc::EIO)))?;
    // Fields after the command name, which may hold spaces: the 3rd field on.
    let rest = stat.rfind(')').map_or("", |i| stat.get(i + 2..).unwrap_or(""));
    let f: Vec<usize> = rest.split(' ').skip(45).take(4).filter_map(|v| v.trim().parse().ok()).collect();
    let [arg_start, arg_end, env_start, env_end] = f[..] else {
        return Err(SysError::new(format!("{step}: unexpected format"), libc::EPROTO));
    };
    for (i, (start, end)) in [(arg_start, arg_end), (env_start, env_end)].into_iter().enumerate() {
        if end <= start {
            continue;
        }
        // SAFETY: the kernel laid out [start, end) in this process's stack at execve of
        // tsbox-sandbox, and it stays mapped; argv and environ point into it, and nothing
        // in the pause reads either again.
        let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
        area.fill(0);
        if i == 0 {
            let n = text.len().min(area.len().saturating_sub(1));
            area[..n].copy_from_slice(&text.as_bytes()[..n]);
        }
    }
    Ok(())
}

/// Entry point of an exec's first process. It is outside the container's pid namespace,
/// so no container process can see it while it still has the host's root, cwd and mount
/// namespace. It joins every namespace of the container (the mount namespace last, which
/// also makes the container's root its root and cwd), then forks the process to run:
/// that one is born in the container's pid namespace already inside everything, reports
/// its own setup errors, and execs. This process reports the new pid and leaves.
pub fn exec_init(process: &ProcessPlan, ns_fds: Vec<(i32, OwnedFd)>, sync_fd: OwnedFd, stdio: Vec<OwnedFd>) -> ! {
    reset_signals();
    let run = || -> Result<i32> {
        match wait_for(sync_fd.as_raw_fd(), "the go signal")? {
            ToChild::Go { .. } => {}
            _ => return Err(SysError::new("unexpected message on setup channel", libc::EPROTO)),
        }
        let (pid_ns, others): (Vec<_>, Vec<_>) = ns_fds.into_iter().partition(|(f, _)| *f == libc::CLONE_NEWPID);
        for (flag, fd) in others.iter().chain(pid_ns.iter()) {
            ok(unsafe { libc::setns(fd.as_raw_fd(), *flag) }, || format!("setns {} of the container", ns_name(*flag)))?;
        }
        drop(others);
        drop(pid_ns);
        // Only the child returns: this process reports the pid and exits in spawn_init.
        spawn_init(sync_fd.as_raw_fd())?;
        exec_process(process, sync_fd.as_raw_fd(), stdio)
    };
    if let Err(e) = run() {
        sync::report(&sync_fd, &e);
    }
    unsafe { libc::_exit(1) }
}

/// The exec'd process, inside the container: becomes what the spec says and execs.
fn exec_process(process: &ProcessPlan, sync_fd: RawFd, stdio: Vec<OwnedFd>) -> ! {
    let run = || -> Result<()> {
        let filter = match &process.seccomp {
            Some(s) => Some(seccomp::compile(s)?),
            None => None,
        };
        let early = filter.is_some() && !process.no_new_privileges;
        setup_stdio(process, stdio)?;
        let home = setup_process(process, if early { filter.as_ref() } else { None })?;
        let program = Program::prepare(process, home)?;
        if let (Some(f), false) = (&filter, early) {
            seccomp::load(f)?;
        }
        program.exec()
    };
    if let Err(e) = run() {
        let _ = sync::send(sync_fd, &FromChild::Error { step: e.step.clone(), errno: e.errno, field: e.field.clone() });
    }
    unsafe { libc::_exit(1) }
}

pub fn ns_name(flag: i32) -> &'static str {
    match flag {
        libc::CLONE_NEWUSER => "user namespace",
        libc::CLONE_NEWNS => "mount namespace",
        libc::CLONE_NEWPID => "pid namespace",
        libc::CLONE_NEWNET => "network namespace",
        libc::CLONE_NEWIPC => "ipc namespace",
        libc::CLONE_NEWUTS => "uts namespace",
        libc::CLONE_NEWCGROUP => "cgroup namespace",
        _ => "namespace",
    }
}

fn open(path: &str, flags: libc::c_int) -> Result<OwnedFd> {
    let c = cstring(path);
    Ok(own(check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) }, || format!("open {path}"))?))
}

fn mount(src: Option<&str>, target: &str, fstype: Option<&str>, flags: u64, data: Option<&str>) -> Result<()> {
    let (s, t, f, d) = (src.map(cstring), cstring(target), fstype.map(cstring), data.filter(|d| !d.is_empty()).map(cstring));
    let ret = unsafe {
        libc::mount(
            s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            t.as_ptr(),
            f.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            flags as libc::c_ulong,
            d.as_ref().map_or(std::ptr::null(), |c| c.as_ptr() as *const libc::c_void),
        )
    };
    ok(ret, || match (src, fstype) {
        (Some(s), Some(f)) if !f.is_empty() => format!("mount {f} {s} on {target}"),
        (Some(s), _) => format!("mount {s} on {target}"),
        _ => format!("mount flags {flags:#x} on {target}"),
    })
}

/// A mount at or under /proc left for the init, because procfs shows the pid namespace
/// of whoever mounts it. Binds are cloned from their host source while it is in reach.
enum Deferred {
    Fs(MountPlan),
    Tree(MountPlan, OwnedFd),
}

impl Deferred {
    fn mount(self, root: &Root) -> Result<()> {
        let (m, tree) = match self {
            Deferred::Fs(m) => {
                let tree = mnt::new_fs(&m.fstype, &m.data, m.flags).map_err(|e| e.with_field(m.field.clone()))?;
                (m, tree)
            }
            Deferred::Tree(m, tree) => (m, tree),
        };
        let attach = || -> Result<()> {
            let dir = inroot::is_dir(&inroot::fstat(tree.as_raw_fd())?);
            let target = if !m.bind && KERNEL_FS.contains(&m.fstype.as_str()) {
                kernel_fs_target(root, &m)?
            } else if dir {
                root.mkdir_all(&m.destination, 0o755)?
            } else {
                root.create_file(&m.destination)?
            };
            mnt::attach(&tree, &target)?;
            apply_recursive(&tree, &m)?;
            if m.propagation != 0 {
                mnt::set_propagation(&tree, m.propagation)?;
            }
            Ok(())
        };
        attach().map_err(|e| e.with_field(m.field.clone()))
    }
}

fn prepare_rootfs(plan: &ContainerPlan, defer_proc: bool) -> Result<Vec<Deferred>> {
    let rootfs = plan.rootfs.as_str();
    let prop = if plan.rootfs_propagation != 0 { plan.rootfs_propagation } else { libc::MS_SLAVE | libc::MS_REC };
    mount(None, "/", None, prop, None).map_err(|e| e.with_field("linux.rootfsPropagation"))?;
    if prop & libc::MS_SHARED != 0 {
        // pivot_root refuses a new root whose parent mount is shared (runc does the same).
        let parent = parent_mount(rootfs);
        mount(None, &parent, None, libc::MS_PRIVATE, None).map_err(|e| e.with_field("linux.rootfsPropagation"))?;
    }
    // pivot_root needs the new root to be a mount point.
    mount(Some(rootfs), rootfs, None, libc::MS_BIND | libc::MS_REC, None).map_err(|e| e.with_field("root.path"))?;
    let root = Root::open(rootfs).map_err(|e| e.with_field("root.path"))?;
    let mut deferred = Vec::new();
    for m in &plan.mounts {
        if defer_proc && (m.destination == "/proc" || m.destination.starts_with("/proc/")) {
            deferred.push(if m.bind {
                let tree = bind_tree(m).map_err(|e| e.with_field(m.field.clone()))?;
                Deferred::Tree(m.clone(), tree)
            } else {
                Deferred::Fs(m.clone())
            });
            continue;
        }
        mount_one(&root, m).map_err(|e| e.with_field(m.field.clone()))?;
    }
    for d in &plan.devices {
        make_device(&root, d, plan.bind_devices).map_err(|e| e.with_field(d.field.clone()))?;
    }
    for l in &plan.symlinks {
        let (dir, name) = root.parent_of(&l.link)?;
        let target = cstring(&l.target);
        if unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) } != 0 && tsbox_sys::last_errno() != libc::EEXIST {
            return Err(SysError::last(format!("symlink {} -> {}", l.link, l.target)));
        }
    }
    Ok(deferred)
}

/// A bind's source cloned, detached, with the bind's flags already set.
fn bind_tree(m: &MountPlan) -> Result<OwnedFd> {
    let src = open(&m.source, libc::O_PATH).map_err(|e| SysError::new(format!("bind source {}", m.source), e.errno))?;
    let tree = mnt::clone_tree(&src, m.flags & libc::MS_REC != 0)?;
    if m.remount {
        mnt::set_bind_flags(&tree, m.flags)?;
    }
    Ok(tree)
}

/// The mount point `path` lives on: the longest mount point in mountinfo that contains it.
fn parent_mount(path: &str) -> String {
    mount_point_of(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default(), path)
}

/// `parent_mount` over a mountinfo text (field 5 is the mount point, with space, tab,
/// newline and backslash written as octal escapes).
fn mount_point_of(mountinfo: &str, path: &str) -> String {
    let mut best = "/".to_string();
    for line in mountinfo.lines() {
        let Some(mp) = line.split(' ').nth(4) else { continue };
        let mp = unescape_mountinfo(mp);
        let inside = path == mp || path.starts_with(&format!("{}/", mp.trim_end_matches('/')));
        if inside && mp.len() > best.len() {
            best = mp;
        }
    }
    best
}

fn unescape_mountinfo(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One spec mount, before pivot_root. The target is created and opened inside the
/// rootfs; a bind's source (a host path, the operator's choice) is opened once and
/// cloned from that fd, its flags set on the detached copy before it is attached.
fn mount_one(root: &Root, m: &MountPlan) -> Result<()> {
    let attached = if m.bind {
        let tree = bind_tree(m)?;
        let dir = inroot::is_dir(&inroot::fstat(tree.as_raw_fd())?);
        let target = if dir { root.mkdir_all(&m.destination, 0o755)? } else { root.create_file(&m.destination)? };
        not_into_proc(&target, m)?;
        mnt::attach(&tree, &target)?;
        tree
    } else {
        let target = if KERNEL_FS.contains(&m.fstype.as_str()) { kernel_fs_target(root, m)? } else { root.mkdir_all(&m.destination, 0o755)? };
        not_into_proc(&target, m)?;
        mnt::mount_fs_on(&m.source, &target, &m.fstype, m.flags, &m.data)?;
        // What is at the destination now is the new filesystem's root.
        root.resolve(&m.destination, libc::O_PATH | libc::O_DIRECTORY, 0)?
    };
    apply_recursive(&attached, m)?;
    if m.propagation != 0 {
        mnt::set_propagation(&attached, m.propagation)?;
    }
    Ok(())
}

/// "rro", "rnosuid", …: the attributes on the mount and everything mounted below it.
fn apply_recursive(mount: &OwnedFd, m: &MountPlan) -> Result<()> {
    if m.recursive_set | m.recursive_clear == 0 {
        return Ok(());
    }
    let (set, clear) = (mnt::attrs_of(m.recursive_set).0, mnt::attrs_of(m.recursive_clear).0);
    mnt::set_attr(mount, true, set, clear, 0).map_err(|e| SysError::new(format!("recursive mount options: {}", e.step), e.errno))
}

/// Filesystems whose place the masked and read-only paths (and the kernel's own writes)
/// depend on: they go exactly where the spec says, never through a symlink of the image
/// (which could put procfs where no mask looks, as runc also refuses).
const KERNEL_FS: &[&str] = &["proc", "sysfs"];

fn kernel_fs_target(root: &Root, m: &MountPlan) -> Result<OwnedFd> {
    match root.resolve(&m.destination, libc::O_PATH | libc::O_DIRECTORY, inroot::RESOLVE_NO_SYMLINKS) {
        Err(e) if e.errno == libc::ENOENT => {
            // Made here, then opened again without following anything.
            root.mkdir_all(&m.destination, 0o755)?;
            root.resolve(&m.destination, libc::O_PATH | libc::O_DIRECTORY, inroot::RESOLVE_NO_SYMLINKS)
        }
        r => r,
    }
    .map_err(|e| SysError::new(format!("{} must be a plain directory for {}: {}", m.destination, m.fstype, e.step), e.errno))
}

/// The plan allows only a few files under /proc; a destination that reaches /proc
/// through a symlink in the image would get around that.
fn not_into_proc(target: &OwnedFd, m: &MountPlan) -> Result<()> {
    if !m.destination.starts_with("/proc/") && inroot::fstatfs_type(target.as_raw_fd())? == libc::PROC_SUPER_MAGIC {
        return Err(SysError::new(format!("{} resolves into /proc", m.destination), libc::EPERM));
    }
    Ok(())
}

fn same_device(st: &libc::stat, d: &crate::plan::DevicePlan) -> bool {
    st.st_mode & libc::S_IFMT == d.file_type && (d.file_type == libc::S_IFIFO || st.st_rdev == libc::makedev(d.major as u32, d.minor as u32))
}

fn make_device(root: &Root, d: &crate::plan::DevicePlan, bind: bool) -> Result<()> {
    let (dir, name) = root.parent_of(&d.path)?;
    if bind {
        // In a user namespace mknod is refused: bind the host's node, after checking it
        // is the device asked for.
        let src = open(&d.path, libc::O_PATH | libc::O_NOFOLLOW)?;
        if !same_device(&inroot::fstat(src.as_raw_fd())?, d) {
            return Err(SysError::new(format!("host {} is not device {}:{}", d.path, d.major, d.minor), libc::ENODEV));
        }
        let target = root.create_file(&d.path)?;
        let st = inroot::fstat(target.as_raw_fd())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG && !same_device(&st, d) {
            return Err(SysError::new(format!("{} exists in the rootfs and is not the device", d.path), libc::EEXIST));
        }
        return mnt::attach(&mnt::clone_tree(&src, false)?, &target);
    }
    let dev = libc::makedev(d.major as u32, d.minor as u32);
    if unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), d.file_type | (d.mode & 0o7777), dev) } != 0 {
        let e = SysError::last(format!("mknod {}", d.path));
        if e.errno != libc::EEXIST {
            return Err(e);
        }
        // Something is already there. The same device is left alone (runc); anything
        // else (a planted symlink, a file) is refused rather than trusted.
        let node =
            inroot::openat2(dir.as_raw_fd(), &name.to_string_lossy(), libc::O_PATH | libc::O_NOFOLLOW, inroot::RESOLVE_BENEATH | inroot::RESOLVE_NO_SYMLINKS)
                .map_err(|e| SysError::new(format!("{} exists in the rootfs: {}", d.path, e.step), e.errno))?;
        return if same_device(&inroot::fstat(node.as_raw_fd())?, d) {
            Ok(())
        } else {
            Err(SysError::new(format!("{} exists in the rootfs and is not the device", d.path), libc::EEXIST))
        };
    }
    // The node we made, by handle: chmod (past the umask) and chown through it.
    let node =
        inroot::openat2(dir.as_raw_fd(), &name.to_string_lossy(), libc::O_PATH | libc::O_NOFOLLOW, inroot::RESOLVE_BENEATH | inroot::RESOLVE_NO_SYMLINKS)?;
    if !same_device(&inroot::fstat(node.as_raw_fd())?, d) {
        return Err(SysError::new(format!("{} was replaced while it was created", d.path), libc::EEXIST));
    }
    let p = cstring(&inroot::fd_path(&node));
    ok(unsafe { libc::chmod(p.as_ptr(), d.mode & 0o7777) }, || format!("chmod {}", d.path))?;
    ok(unsafe { libc::fchownat(node.as_raw_fd(), c"".as_ptr(), d.uid, d.gid, libc::AT_EMPTY_PATH) }, || format!("chown {}", d.path))
}

fn enter_rootfs(plan: &ContainerPlan) -> Result<()> {
    pivot(&plan.rootfs)?;
    if plan.rootfs_propagation != 0 {
        // The old root's detach made "/" a slave; give it the propagation the spec asked for.
        mount(None, "/", None, plan.rootfs_propagation, None).map_err(|e| e.with_field("linux.rootfsPropagation"))?;
    }
    Ok(())
}

fn pivot(rootfs: &str) -> Result<()> {
    let old_root = open("/", libc::O_DIRECTORY | libc::O_RDONLY)?;
    let c = cstring(rootfs);
    ok(unsafe { libc::chdir(c.as_ptr()) }, || format!("chdir {rootfs}")).map_err(|e| e.with_field("root.path"))?;
    match pivot_root(".", ".") {
        Ok(()) => {
            // The old root now sits on top of the new one. Only it is made a slave (so
            // its unmount cannot propagate to the host) and detached: from its own fd,
            // because "." may still name the new root, whose mounts must keep the
            // propagation the spec gave them (rshared volumes).
            ok(unsafe { libc::fchdir(old_root.as_raw_fd()) }, || "chdir to the old root".into())?;
            mount(None, ".", None, libc::MS_SLAVE | libc::MS_REC, None)?;
            let dot = cstring(".");
            ok(unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) }, || "unmount the old root".into())?;
        }
        // An initramfs (ramfs/tmpfs) host root cannot be pivoted away from: move and chroot
        // instead. Anywhere else EINVAL is a real error: a chroot would be escapable.
        Err(e) if e.errno == libc::EINVAL && host_root_is_ramfs() => {
            mount(Some(rootfs), "/", None, libc::MS_MOVE, None).map_err(|e| e.with_field("root.path"))?;
            let dot = cstring(".");
            ok(unsafe { libc::chroot(dot.as_ptr()) }, || format!("chroot {rootfs}"))?;
        }
        Err(e) => return Err(e.with_field("root.path")),
    }
    let root = cstring("/");
    ok(unsafe { libc::chdir(root.as_ptr()) }, || "chdir /".into())
}

fn host_root_is_ramfs() -> bool {
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let root = cstring("/");
    let ok = unsafe { libc::statfs(root.as_ptr(), &mut st) } == 0;
    ok && matches!(st.f_type as i64, RAMFS_MAGIC | TMPFS_MAGIC)
}

/// The container's /proc, checked to be a procfs mount (not a directory of the image,
/// not a bind), for writes that must reach the kernel and nothing else.
fn container_proc(root: &Root) -> Result<OwnedFd> {
    let proc = root.resolve("/proc", libc::O_PATH | libc::O_DIRECTORY, inroot::RESOLVE_NO_SYMLINKS)?;
    if inroot::fstatfs_type(proc.as_raw_fd())? != libc::PROC_SUPER_MAGIC {
        return Err(SysError::new("/proc in the container is not a procfs", libc::EINVAL));
    }
    Ok(proc)
}

/// Asks AppArmor to confine the program we are about to execve with `profile`, through
/// the container's verified procfs. A host without AppArmor fails here: a profile that
/// was asked for is never silently dropped.
fn apparmor_on_exec(profile: &str) -> Result<()> {
    let proc = container_proc(&Root::open("/")?)?;
    let me = unsafe { libc::getpid() };
    let resolve = inroot::RESOLVE_BENEATH | inroot::RESOLVE_NO_SYMLINKS | inroot::RESOLVE_NO_XDEV | inroot::RESOLVE_NO_MAGICLINKS;
    let f = inroot::openat2(proc.as_raw_fd(), &format!("{me}/attr/apparmor/exec"), libc::O_WRONLY, resolve)
        .or_else(|_| inroot::openat2(proc.as_raw_fd(), &format!("{me}/attr/exec"), libc::O_WRONLY, resolve))
        .map_err(|e| SysError::new(format!("AppArmor profile {profile}: {}", e.step), e.errno))?;
    let cmd = format!("exec {profile}");
    let n = unsafe { libc::write(f.as_raw_fd(), cmd.as_ptr() as *const libc::c_void, cmd.len()) };
    if n < 0 {
        let e = SysError::last(format!("AppArmor profile {profile}: change on exec"));
        return Err(if e.errno == libc::EINVAL || e.errno == libc::ENOENT {
            SysError::new(format!("AppArmor profile {profile}: AppArmor is not enabled on this host"), e.errno)
        } else {
            e
        });
    }
    Ok(())
}

/// After pivot_root: sysctls, read-only and masked paths, a read-only root. Everything
/// is opened inside "/" (now the container's root) and acted on by handle.
fn finish_rootfs(plan: &ContainerPlan, root: &Root) -> Result<()> {
    // Masked and read-only paths are looked up under /proc and /sys: those must be the
    // filesystems the spec mounted there, or a mask would find nothing and be skipped.
    for (dest, magic) in [("/proc", libc::PROC_SUPER_MAGIC), ("/sys", libc::SYSFS_MAGIC)] {
        if plan.mounts.iter().any(|m| m.destination == dest && !m.bind) {
            let fd = root.resolve(dest, libc::O_PATH | libc::O_DIRECTORY, inroot::RESOLVE_NO_SYMLINKS)?;
            if inroot::fstatfs_type(fd.as_raw_fd())? != magic {
                return Err(SysError::new(format!("{dest} in the container is not the filesystem mounted there"), libc::EINVAL));
            }
        }
    }
    // Sysctls first: /proc/sys is usually among the read-only paths (runc's order). The
    // file is opened beneath the verified procfs without crossing into another mount, so
    // a bind over /proc/sys/... cannot redirect the write.
    if !plan.sysctls.is_empty() {
        let proc = container_proc(root).map_err(|e| e.with_field("linux.sysctl"))?;
        for s in &plan.sysctls {
            let field = format!("linux.sysctl[{}]", s.key);
            let rel = format!("sys/{}", s.key.replace('.', "/"));
            let resolve = inroot::RESOLVE_BENEATH | inroot::RESOLVE_NO_SYMLINKS | inroot::RESOLVE_NO_XDEV | inroot::RESOLVE_NO_MAGICLINKS;
            let f = inroot::openat2(proc.as_raw_fd(), &rel, libc::O_WRONLY, resolve).map_err(|e| e.with_field(field.clone()))?;
            if inroot::fstatfs_type(f.as_raw_fd())? != libc::PROC_SUPER_MAGIC {
                return Err(SysError::new(format!("/proc/{rel} is not on procfs"), libc::EINVAL).with_field(field));
            }
            let n = unsafe { libc::write(f.as_raw_fd(), s.value.as_ptr() as *const libc::c_void, s.value.len()) };
            ok(n as libc::c_int, || format!("write /proc/{rel}")).map_err(|e| e.with_field(field))?;
        }
    }
    for (i, p) in plan.readonly_paths.iter().enumerate() {
        let field = format!("linux.readonlyPaths[{i}]");
        let target = match root.resolve(p, libc::O_PATH, 0) {
            Ok(fd) => fd,
            Err(e) if e.errno == libc::ENOENT => continue,
            Err(e) => return Err(e.with_field(field)),
        };
        // Only "ro" is added: the mount keeps nosuid/nodev/noexec (a remount would drop them).
        let readonly = || -> Result<()> {
            let tree = mnt::clone_tree(&target, true)?;
            mnt::set_attr(&tree, true, mnt::MOUNT_ATTR_RDONLY, 0, 0)?;
            mnt::attach(&tree, &target)
        };
        readonly().map_err(|e| SysError::new(format!("make {p} read-only: {}", e.step), e.errno).with_field(field))?;
    }
    if !plan.masked_paths.is_empty() {
        mask_paths(root, &plan.masked_paths)?;
    }
    if plan.rootfs_readonly {
        let top = root.resolve("/", libc::O_PATH | libc::O_DIRECTORY, 0)?;
        mnt::set_attr(&top, false, mnt::MOUNT_ATTR_RDONLY, 0, 0).map_err(|e| e.with_field("root.readonly"))?;
    }
    Ok(())
}

/// Files are covered with the container's /dev/null, directories with an empty read-only
/// tmpfs. /dev/null is used only if it really is the null device (char 1:3) and not a
/// symlink: one planted by the image or a volume would otherwise become the mask.
fn mask_paths(root: &Root, paths: &[String]) -> Result<()> {
    let mut null: Option<OwnedFd> = None;
    for (i, p) in paths.iter().enumerate() {
        let field = format!("linux.maskedPaths[{i}]");
        let target = match root.resolve(p, libc::O_PATH, 0) {
            Ok(fd) => fd,
            Err(e) if e.errno == libc::ENOENT => continue,
            Err(e) => return Err(e.with_field(field)),
        };
        let tree = if inroot::is_dir(&inroot::fstat(target.as_raw_fd())?) {
            mnt::empty_tmpfs()
        } else {
            if null.is_none() {
                null = Some(dev_null(root).map_err(|e| e.with_field(field.clone()))?);
            }
            null.as_ref().map_or_else(|| Err(SysError::new("no /dev/null", libc::ENODEV)), |n| mnt::clone_tree(n, false))
        };
        tree.and_then(|t| mnt::attach(&t, &target)).map_err(|e| SysError::new(format!("mask {p}: {}", e.step), e.errno).with_field(field))?;
    }
    Ok(())
}

fn dev_null(root: &Root) -> Result<OwnedFd> {
    let fd = root.resolve("/dev/null", libc::O_PATH | libc::O_NOFOLLOW, inroot::RESOLVE_NO_SYMLINKS)?;
    let st = inroot::fstat(fd.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err(SysError::new("/dev/null in the container is not the null device (char 1:3)", libc::ENODEV));
    }
    Ok(fd)
}

/// Gives the process its stdio. With a terminal, `stdio[0]` is a console socket: the pty
/// is opened here, inside the container (so `tty` names a device of the container's own
/// devpts, as with runc), its master is sent back over the socket with SCM_RIGHTS, and
/// the slave becomes the controlling terminal and fds 0-2.
fn setup_stdio(p: &ProcessPlan, stdio: Vec<OwnedFd>) -> Result<()> {
    ok(unsafe { libc::setsid() }, || "setsid".into())?;
    if p.terminal {
        let Some(console) = stdio.first() else {
            return Err(SysError::new("terminal requested but no console socket was passed", libc::EINVAL).with_field("process.terminal"));
        };
        let (master, slave) = open_pty().map_err(|e| e.with_field("process.terminal"))?;
        if let Some((rows, cols)) = p.console_size {
            let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
            unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
        ok(unsafe { libc::fchown(slave.as_raw_fd(), p.uid, u32::MAX) }, || "chown the pty to the process user".into())
            .map_err(|e| e.with_field("process.terminal"))?;
        tsbox_sys::fd::send_with_fds(console.as_raw_fd(), b"/dev/ptmx", &[master.as_raw_fd()])
            .map_err(|e| SysError::new(format!("send the pty master over the console socket: {}", e.step), e.errno).with_field("process.terminal"))?;
        drop(master);
        ok(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) }, || "make the pty the controlling terminal".into())
            .map_err(|e| e.with_field("process.terminal"))?;
        for target in 0..3 {
            ok(unsafe { libc::dup2(slave.as_raw_fd(), target) }, || format!("dup2 pty onto fd {target}"))?;
        }
        return Ok(());
    }
    let null = open("/dev/null", libc::O_RDWR)?;
    for target in 0..3 {
        let src = stdio.get(target as usize).map_or(null.as_raw_fd(), |f| f.as_raw_fd());
        ok(unsafe { libc::dup2(src, target) }, || format!("dup2 stdio onto fd {target}"))?;
    }
    Ok(())
}

const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// A pty from this mount namespace's /dev/ptmx; the slave is opened through the master
/// (TIOCGPTPEER), so no /dev/pts path lookup can be raced.
fn open_pty() -> Result<(OwnedFd, OwnedFd)> {
    let master = open("/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY)?;
    // Whatever the image put at /dev/ptmx, only the pty multiplexer (char 5:2) will do.
    let st = inroot::fstat(master.as_raw_fd())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(5, 2) {
        return Err(SysError::new("/dev/ptmx in the container is not the pty multiplexer (char 5:2)", libc::ENODEV));
    }
    let unlock: libc::c_int = 0;
    ok(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) }, || "unlock the pty".into())?;
    let slave = check(unsafe { libc::ioctl(master.as_raw_fd(), TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) }, || {
        "open the pty slave (TIOCGPTPEER)".into()
    })?;
    Ok((master, own(slave)))
}

const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_RAISE: libc::c_ulong = 2;

/// Becomes the process the spec describes, short of execve. Returns the HOME to give it
/// when its env has none. Everything that looks a path up inside the root (openat2) is
/// done before an early seccomp filter is loaded: the container's profile need not allow
/// syscalls only the runtime uses (runtime-tools' default profile has no openat2).
fn setup_process(p: &ProcessPlan, early_seccomp: Option<&libseccomp::ScmpFilterContext>) -> Result<Option<String>> {
    // Only stdio crosses into the container's program (runc closes the rest too); done
    // before any seccomp filter could refuse close_range.
    crate::cloexec_from(3);
    // Resolved inside the root with no magic links: a cwd can never be a host fd's
    // directory (/proc/self/fd/N), whatever the spec or the image says. Entered while
    // still root, as runc's first chdir does.
    let cwd = Root::open("/").and_then(|r| r.resolve(&p.cwd, libc::O_PATH | libc::O_DIRECTORY, 0)).map_err(|e| e.with_field("process.cwd"))?;
    ok(unsafe { libc::fchdir(cwd.as_raw_fd()) }, || format!("chdir {}", p.cwd)).map_err(|e| e.with_field("process.cwd"))?;
    drop(cwd);
    // Like runc: a process without HOME gets its user's home directory.
    let home = (!p.env.iter().any(|e| e.starts_with("HOME="))).then(|| home_of(p.uid));
    for r in &p.rlimits {
        let lim = libc::rlimit { rlim_cur: r.soft.unwrap_or(libc::RLIM_INFINITY), rlim_max: r.hard.unwrap_or(libc::RLIM_INFINITY) };
        ok(unsafe { libc::setrlimit(r.resource as _, &lim) }, || format!("setrlimit {}", r.resource)).map_err(|e| e.with_field(r.field.clone()))?;
    }
    if let Some(profile) = &p.apparmor_profile {
        apparmor_on_exec(profile).map_err(|e| e.with_field("process.apparmorProfile"))?;
    }
    if let Some(f) = early_seccomp {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: do it while we have it.
        seccomp::load(f)?;
    }
    let last = tsbox_sys::sys::cap_last_cap();
    if let Some(caps) = &p.capabilities {
        for cap in 0..=last {
            if caps.bounding & (1u64 << cap) == 0 {
                ok(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) }, || format!("drop capability {cap} from the bounding set"))
                    .map_err(|e| e.with_field("process.capabilities.bounding"))?;
            }
        }
        ok(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) }, || "prctl PR_SET_KEEPCAPS".into())?;
    }
    ok(unsafe { libc::setgroups(p.additional_gids.len(), p.additional_gids.as_ptr()) }, || "setgroups".into())
        .map_err(|e| e.with_field("process.user.additionalGids"))?;
    ok(unsafe { libc::setresgid(p.gid, p.gid, p.gid) }, || format!("setresgid {}", p.gid)).map_err(|e| e.with_field("process.user.gid"))?;
    ok(unsafe { libc::setresuid(p.uid, p.uid, p.uid) }, || format!("setresuid {}", p.uid)).map_err(|e| e.with_field("process.user.uid"))?;
    if let Some(caps) = &p.capabilities {
        let mask = if last >= 63 { u64::MAX } else { (1u64 << (last + 1)) - 1 };
        ok(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) }, || "prctl PR_SET_KEEPCAPS".into())?;
        tsbox_sys::sys::capset(caps.effective & mask, caps.permitted & mask, caps.inheritable & mask).map_err(|e| e.with_field("process.capabilities"))?;
        // The kernel allows an ambient capability only when it is both permitted and
        // inheritable; like runc, the others are skipped rather than failing the start.
        let raisable = caps.ambient & caps.permitted & caps.inheritable;
        for cap in 0..=last {
            if raisable & (1u64 << cap) != 0 {
                ok(unsafe { libc::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap as libc::c_ulong, 0, 0) }, || format!("raise ambient capability {cap}"))
                    .map_err(|e| e.with_field("process.capabilities.ambient"))?;
            }
        }
    }
    if let Some(mask) = p.umask {
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    if p.no_new_privileges {
        ok(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }, || "prctl PR_SET_NO_NEW_PRIVS".into())
            .map_err(|e| e.with_field("process.noNewPrivileges"))?;
    }
    Ok(home)
}

/// args[0] as execve needs it: a path, or looked up on the process's own PATH.
fn resolve_program(p: &ProcessPlan) -> Result<String> {
    find_program(&p.args, &p.env, |path| {
        let c = cstring(path);
        unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
    })
}

/// args[0] as execve will find it: a path as given, else the first PATH entry (the
/// process's own PATH, or the usual default) where `executable` says it can be run.
fn find_program(args: &[String], env: &[String], executable: impl Fn(&str) -> bool) -> Result<String> {
    let Some(arg0) = args.first() else {
        return Err(SysError::new("no program to run", libc::EINVAL).with_field("process.args"));
    };
    if arg0.contains('/') {
        if !executable(arg0) {
            return Err(SysError::last(format!("exec {arg0}")).with_field("process.args[0]"));
        }
        return Ok(arg0.clone());
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|dir| format!("{dir}/{arg0}"))
        .find(|candidate| executable(candidate))
        .ok_or_else(|| SysError::new(format!("exec {arg0}: not found in PATH"), libc::ENOENT).with_field("process.args[0]"))
}

/// The home directory of `uid` in the container's /etc/passwd, "/" when it has none.
fn home_of(uid: u32) -> String {
    // Non-blocking and only a regular file: a FIFO planted at /etc/passwd must not hold
    // the setup (and the sandbox waiting for it); at most 1 MiB is read.
    let passwd = Root::open("/")
        .and_then(|r| r.resolve("/etc/passwd", libc::O_RDONLY | libc::O_NONBLOCK, 0))
        .ok()
        .filter(|fd| inroot::fstat(fd.as_raw_fd()).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG))
        .map(std::fs::File::from);
    let text = passwd.and_then(|f| {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(f, 1 << 20), &mut s).ok().map(|_| s)
    });
    text.unwrap_or_default()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse() == Ok(uid))
        .map(|f| f[5].to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// The execve of the process, checked (the program exists and may be run) while the
/// container is still being created, so a bad program fails the create, as with runc.
struct Program {
    path: std::ffi::CString,
    args: Vec<std::ffi::CString>,
    env: Vec<std::ffi::CString>,
}

impl Program {
    fn prepare(p: &ProcessPlan, home: Option<String>) -> Result<Program> {
        let path = resolve_program(p)?;
        let mut env = p.env.clone();
        env.extend(home.map(|h| format!("HOME={h}")));
        Ok(Program { path: cstring(&path), args: p.args.iter().map(|a| cstring(a)).collect(), env: env.iter().map(|e| cstring(e)).collect() })
    }

    fn exec(self) -> Result<()> {
        let mut argv: Vec<*const libc::c_char> = self.args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = self.env.iter().map(|e| e.as_ptr()).collect();
        envp.push(std::ptr::null());
        unsafe { libc::execve(self.path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        Err(SysError::last(format!("exec {}", self.path.to_string_lossy())).with_field("process.args[0]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_point_is_the_longest_containing_one_with_escapes_undone() {
        let info = "22 1 0:21 / / rw - ext4 /dev/sda rw\n\
                    23 22 0:22 / /var/lib rw - tmpfs t rw\n\
                    24 23 0:23 / /var/lib/my\\040dir rw - tmpfs t rw\n\
                    25 22 0:24 / /var/lib2 rw - tmpfs t rw\n";
        assert_eq!(mount_point_of(info, "/var/lib/x/rootfs"), "/var/lib");
        assert_eq!(mount_point_of(info, "/var/lib/my dir/rootfs"), "/var/lib/my dir");
        assert_eq!(mount_point_of(info, "/var/lib2"), "/var/lib2");
        assert_eq!(mount_point_of(info, "/var/lib22"), "/");
        assert_eq!(mount_point_of("", "/x"), "/");
        assert_eq!(unescape_mountinfo("a\\011b\\134c\\9"), "a\tb\\c\\9");
    }

    #[test]
    fn programs_are_found_like_execvp_would() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let exists = |p: &str| ["/bin/sh", "/opt/bin/tool", "/usr/bin/tool"].contains(&p);
        assert_eq!(find_program(&s(&["sh"]), &[], exists).ok(), Some("/bin/sh".to_string()));
        assert_eq!(find_program(&s(&["tool"]), &s(&["PATH=::/opt/bin:/usr/bin"]), exists).ok(), Some("/opt/bin/tool".to_string()));
        assert_eq!(find_program(&s(&["tool"]), &s(&["PATH=/usr/bin:/opt/bin"]), exists).ok(), Some("/usr/bin/tool".to_string()));
        assert_eq!(find_program(&s(&["./tool"]), &[], |p| p == "./tool").ok(), Some("./tool".to_string()));
        let missing = find_program(&s(&["nope"]), &[], exists).err();
        assert_eq!(
            missing.map(|e| (e.to_string(), e.errno)),
            Some(("process.args[0]: exec nope: not found in PATH: ENOENT (no such file or directory)".to_string(), libc::ENOENT))
        );
        assert_eq!(find_program(&[], &[], exists).err().map(|e| e.field), Some("process.args".to_string()));
    }
}
