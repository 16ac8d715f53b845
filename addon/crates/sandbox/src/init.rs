//! What runs in a new container process between clone3 and execve: namespaces, the root
//! filesystem, the process's identity and privileges, and the start gate. Single-threaded
//! and never returning: on any failure it reports {step, errno, field} to tsbox-sandbox
//! over the setup channel and exits.

use crate::plan::{ContainerPlan, MountPlan, ProcessPlan};
use crate::sync::{self, FromChild, ToChild};
use crate::{hooks, seccomp};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};
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
 * before execve, even through ptrace or pidfd_getfd — can reach them. Not dumpable until
 * execve either (it resets that), unless a new user namespace needs its own /proc files.
 */
pub fn isolate_child(keep: &[RawFd], dumpable: bool) {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            unsafe { libc::close(fd) };
        }
    }
    if !dumpable {
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    }
}

fn wait_for(sync_fd: RawFd, what: &str) -> Result<ToChild> {
    match sync::recv::<ToChild>(sync_fd)? {
        Some(m) => Ok(m),
        None => Err(SysError::new(format!("tsbox-sandbox went away while waiting for {what}"), libc::EPIPE)),
    }
}

/// Entry point of a container's init in the cloned child.
pub fn container_init(plan: &ContainerPlan, sync_fd: OwnedFd, stdio: Vec<OwnedFd>) -> ! {
    reset_signals();
    if let Err(e) = container_setup(plan, sync_fd.as_raw_fd(), stdio) {
        sync::report(&sync_fd, &e);
    }
    unsafe { libc::_exit(1) }
}

fn container_setup(plan: &ContainerPlan, sync_fd: RawFd, stdio: Vec<OwnedFd>) -> Result<()> {
    let host_pid = match wait_for(sync_fd, "the go signal")? {
        ToChild::Go { pid } => pid,
        _ => return Err(SysError::new("unexpected message on setup channel", libc::EPROTO)),
    };
    if plan.clone_flags & libc::CLONE_NEWUSER as u64 != 0 {
        // Maps are written; become the namespace's root for the rest of the setup.
        ok(unsafe { libc::setresgid(0, 0, 0) }, || "setresgid 0 in the new user namespace".into())?;
        ok(unsafe { libc::setresuid(0, 0, 0) }, || "setresuid 0 in the new user namespace".into())?;
    }
    if plan.unshare_cgroup_ns {
        ok(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }, || "unshare cgroup namespace".into())
            .map_err(|e| e.with_field("linux.namespaces"))?;
    }
    // The pid namespace was entered by tsbox-sandbox before clone3 (it applies to children).
    for ns in plan.join_namespaces.iter().filter(|n| n.flag != libc::CLONE_NEWPID as u64) {
        let fd = open(&ns.path, libc::O_RDONLY).map_err(|e| e.with_field(ns.field.clone()))?;
        ok(unsafe { libc::setns(fd.as_raw_fd(), ns.flag as libc::c_int) }, || format!("setns {}", ns.path))
            .map_err(|e| e.with_field(ns.field.clone()))?;
    }
    if let Some(h) = &plan.hostname {
        ok(unsafe { libc::sethostname(h.as_ptr() as *const libc::c_char, h.len()) }, || format!("sethostname {h}"))
            .map_err(|e| e.with_field("hostname"))?;
    }
    if let Some(d) = &plan.domainname {
        ok(unsafe { libc::setdomainname(d.as_ptr() as *const libc::c_char, d.len()) }, || format!("setdomainname {d}"))
            .map_err(|e| e.with_field("domainname"))?;
    }

    prepare_rootfs(plan)?;

    let mut state = plan.hook_state.clone();
    state["pid"] = serde_json::Value::from(host_pid);
    if plan.pause_for_hooks {
        sync::send(sync_fd, &FromChild::Hooks)?;
        match wait_for(sync_fd, "createRuntime hooks")? {
            ToChild::Continue => {}
            _ => return Err(SysError::new("unexpected message on setup channel", libc::EPROTO)),
        }
    }
    state["status"] = "created".into();
    hooks::run_all("createContainer", &plan.hooks.create_container, &state.to_string())?;

    enter_rootfs(&plan.rootfs)?;
    if plan.rootfs_propagation != 0 {
        // The old root's detach made "/" a slave; give it the propagation the spec asked for.
        mount(None, "/", None, plan.rootfs_propagation, None).map_err(|e| e.with_field("linux.rootfsPropagation"))?;
    }
    finish_rootfs(plan)?;

    if let Some(adj) = plan.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| io_err("write /proc/self/oom_score_adj", e).with_field("process.oomScoreAdj"))?;
    }

    let filter = match &plan.process.seccomp {
        Some(s) => Some(seccomp::compile(s)?),
        None => None,
    };
    let early_seccomp = filter.is_some() && !plan.process.no_new_privileges;
    setup_stdio(&plan.process, stdio)?;
    setup_process(&plan.process, if early_seccomp { filter.as_ref() } else { None })?;

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
    exec(&plan.process)
}

/// Entry point of an exec'd process: it is already in the container's pid namespace;
/// joins the others, becomes the process the spec describes, and execs right away.
pub fn exec_init(process: &ProcessPlan, ns_fds: Vec<(i32, OwnedFd)>, sync_fd: OwnedFd, stdio: Vec<OwnedFd>) -> ! {
    reset_signals();
    let run = || -> Result<()> {
        match wait_for(sync_fd.as_raw_fd(), "the go signal")? {
            ToChild::Go { .. } => {}
            _ => return Err(SysError::new("unexpected message on setup channel", libc::EPROTO)),
        }
        for (flag, fd) in &ns_fds {
            ok(unsafe { libc::setns(fd.as_raw_fd(), *flag) }, || format!("setns {} of the container", ns_name(*flag)))?;
        }
        drop(ns_fds);
        let filter = match &process.seccomp {
            Some(s) => Some(seccomp::compile(s)?),
            None => None,
        };
        let early = filter.is_some() && !process.no_new_privileges;
        setup_stdio(process, stdio)?;
        setup_process(process, if early { filter.as_ref() } else { None })?;
        if let (Some(f), false) = (&filter, early) {
            seccomp::load(f)?;
        }
        exec(process)
    };
    if let Err(e) = run() {
        sync::report(&sync_fd, &e);
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

fn io_err(step: &str, e: std::io::Error) -> SysError {
    SysError::new(step.to_string(), e.raw_os_error().unwrap_or(libc::EIO))
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

/// Resolves `path` (absolute, as the container sees it) inside `root` without letting a
/// symlink in the image lead outside it: every symlink met is resolved against `root`.
pub fn secure_join(root: &str, path: &str) -> Result<PathBuf> {
    let root = Path::new(root);
    let mut out = PathBuf::new(); // relative to root
    let mut pending: Vec<PathBuf> = vec![PathBuf::from(path)];
    let mut hops = 0;
    while let Some(p) = pending.pop() {
        let mut comps: Vec<Component> = p.components().collect();
        comps.reverse();
        while let Some(c) = comps.pop() {
            match c {
                Component::RootDir => out = PathBuf::new(),
                Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(name) => {
                    let candidate = out.join(name);
                    match std::fs::read_link(root.join(&candidate)) {
                        // Never leave a link unresolved: the host would follow it.
                        Ok(_) if hops >= 255 => {
                            return Err(SysError::new(format!("resolve {path} in the rootfs: too many symlinks"), libc::ELOOP));
                        }
                        Ok(target) => {
                            hops += 1;
                            let rest: PathBuf = comps.iter().rev().collect();
                            comps.clear();
                            pending.push(rest);
                            pending.push(target);
                        }
                        _ => out = candidate,
                    }
                }
            }
        }
    }
    Ok(root.join(out))
}

fn mkdir_all(path: &Path, step: &str) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| io_err(&format!("{step}: mkdir {}", path.display()), e))
}

/// Flags of the mount at `path` that a remount inside a user namespace must keep.
fn locked_flags(path: &str) -> u64 {
    let c = cstring(path);
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    let f = st.f_flag;
    let mut out = 0u64;
    for (vfs, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if f & vfs != 0 {
            out |= ms as u64;
        }
    }
    out
}

fn remount_bind(target: &str, flags: u64) -> Result<()> {
    let base = libc::MS_BIND as u64 | libc::MS_REMOUNT as u64 | flags;
    match mount(None, target, None, base, None) {
        Err(e) if e.errno == libc::EPERM => mount(None, target, None, base | locked_flags(target), None),
        r => r,
    }
}

fn prepare_rootfs(plan: &ContainerPlan) -> Result<()> {
    let rootfs = plan.rootfs.as_str();
    let prop = if plan.rootfs_propagation != 0 { plan.rootfs_propagation } else { (libc::MS_SLAVE | libc::MS_REC) as u64 };
    mount(None, "/", None, prop, None).map_err(|e| e.with_field("linux.rootfsPropagation"))?;
    if prop & libc::MS_SHARED as u64 != 0 {
        // pivot_root refuses a new root whose parent mount is shared (runc does the same).
        let parent = parent_mount(rootfs);
        mount(None, &parent, None, libc::MS_PRIVATE as u64, None).map_err(|e| e.with_field("linux.rootfsPropagation"))?;
    }
    // pivot_root needs the new root to be a mount point.
    mount(Some(rootfs), rootfs, None, (libc::MS_BIND | libc::MS_REC) as u64, None).map_err(|e| e.with_field("root.path"))?;
    for m in &plan.mounts {
        mount_one(rootfs, m).map_err(|e| e.with_field(m.field.clone()))?;
    }
    for d in &plan.devices {
        make_device(rootfs, d, plan.bind_devices).map_err(|e| e.with_field(d.field.clone()))?;
    }
    for l in &plan.symlinks {
        let link = secure_join(rootfs, &l.link)?;
        match std::os::unix::fs::symlink(&l.target, &link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&format!("symlink {} -> {}", l.link, l.target), e)),
        }
    }
    Ok(())
}

/// The mount point `path` lives on: the longest mount point in mountinfo that contains it.
fn parent_mount(path: &str) -> String {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best = "/".to_string();
    for line in info.lines() {
        let Some(mp) = line.split(' ').nth(4) else { continue };
        let mp = mp.replace("\\040", " ");
        let inside = path == mp || path.starts_with(&format!("{}/", mp.trim_end_matches('/')));
        if inside && mp.len() > best.len() {
            best = mp;
        }
    }
    best
}

fn mount_one(rootfs: &str, m: &MountPlan) -> Result<()> {
    let target = secure_join(rootfs, &m.destination)?;
    let target_s = target.to_string_lossy().into_owned();
    if m.bind {
        let meta = std::fs::metadata(&m.source).map_err(|e| io_err(&format!("bind source {}", m.source), e))?;
        if meta.is_dir() {
            mkdir_all(&target, "bind target")?;
        } else {
            if let Some(parent) = target.parent() {
                mkdir_all(parent, "bind target")?;
            }
            if std::fs::symlink_metadata(&target).is_err() {
                std::fs::File::create(&target).map_err(|e| io_err(&format!("create bind target {target_s}"), e))?;
            }
        }
        let rec = m.flags & libc::MS_REC as u64;
        mount(Some(&m.source), &target_s, None, libc::MS_BIND as u64 | rec, None)?;
        if m.remount {
            remount_bind(&target_s, m.flags & !(libc::MS_REC as u64))?;
        }
    } else {
        mkdir_all(&target, "mount target")?;
        mount(Some(&m.source), &target_s, Some(&m.fstype), m.flags, Some(&m.data))?;
    }
    if m.propagation != 0 {
        mount(None, &target_s, None, m.propagation, None)?;
    }
    Ok(())
}

fn make_device(rootfs: &str, d: &crate::plan::DevicePlan, bind: bool) -> Result<()> {
    let target = secure_join(rootfs, &d.path)?;
    if let Some(parent) = target.parent() {
        mkdir_all(parent, "device")?;
    }
    let target_s = target.to_string_lossy().into_owned();
    if bind {
        if std::fs::symlink_metadata(&target).is_err() {
            std::fs::File::create(&target).map_err(|e| io_err(&format!("create device target {target_s}"), e))?;
        }
        return mount(Some(&d.path), &target_s, None, libc::MS_BIND as u64, None);
    }
    let c = cstring(&target_s);
    let dev = libc::makedev(d.major as u32, d.minor as u32);
    let ret = unsafe { libc::mknod(c.as_ptr(), d.file_type | (d.mode & 0o7777), dev) };
    if ret != 0 {
        let e = SysError::last(format!("mknod {}", d.path));
        // Something is already there: leave it alone rather than chmod/chown it (runc).
        return if e.errno == libc::EEXIST { Ok(()) } else { Err(e) };
    }
    ok(unsafe { libc::chmod(c.as_ptr(), d.mode & 0o7777) }, || format!("chmod {}", d.path))?;
    ok(unsafe { libc::chown(c.as_ptr(), d.uid, d.gid) }, || format!("chown {}", d.path))
}

fn enter_rootfs(rootfs: &str) -> Result<()> {
    let c = cstring(rootfs);
    ok(unsafe { libc::chdir(c.as_ptr()) }, || format!("chdir {rootfs}")).map_err(|e| e.with_field("root.path"))?;
    match pivot_root(".", ".") {
        Ok(()) => {
            // The old root now sits under the new one; detach it without letting the
            // unmount propagate back to the host.
            mount(None, ".", None, (libc::MS_SLAVE | libc::MS_REC) as u64, None)?;
            let dot = cstring(".");
            ok(unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) }, || "unmount the old root".into())?;
        }
        // An initramfs (ramfs/tmpfs) host root cannot be pivoted away from: move and chroot
        // instead. Anywhere else EINVAL is a real error: a chroot would be escapable.
        Err(e) if e.errno == libc::EINVAL && host_root_is_ramfs() => {
            mount(Some(rootfs), "/", None, libc::MS_MOVE as u64, None).map_err(|e| e.with_field("root.path"))?;
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

fn finish_rootfs(plan: &ContainerPlan) -> Result<()> {
    // Sysctls first: /proc/sys is usually among the read-only paths (runc's order).
    for s in &plan.sysctls {
        let path = format!("/proc/sys/{}", s.key.replace('.', "/"));
        std::fs::write(&path, &s.value)
            .map_err(|e| io_err(&format!("write {path}"), e).with_field(format!("linux.sysctl[{}]", s.key)))?;
    }
    for (i, p) in plan.readonly_paths.iter().enumerate() {
        let field = format!("linux.readonlyPaths[{i}]");
        if std::fs::symlink_metadata(p).is_err() {
            continue;
        }
        mount(Some(p), p, None, (libc::MS_BIND | libc::MS_REC) as u64, None).map_err(|e| e.with_field(field.clone()))?;
        remount_bind(p, (libc::MS_RDONLY | libc::MS_REC) as u64).map_err(|e| e.with_field(field))?;
    }
    for (i, p) in plan.masked_paths.iter().enumerate() {
        let field = format!("linux.maskedPaths[{i}]");
        let Ok(meta) = std::fs::metadata(p) else { continue };
        if meta.is_dir() {
            mount(Some("tmpfs"), p, Some("tmpfs"), libc::MS_RDONLY as u64, None)
        } else {
            mount(Some("/dev/null"), p, None, libc::MS_BIND as u64, None)
        }
        .map_err(|e| e.with_field(field))?;
    }
    if plan.rootfs_readonly {
        remount_bind("/", libc::MS_RDONLY as u64).map_err(|e| e.with_field("root.readonly"))?;
    }
    Ok(())
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
    let unlock: libc::c_int = 0;
    ok(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) }, || "unlock the pty".into())?;
    let slave = check(
        unsafe { libc::ioctl(master.as_raw_fd(), TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) },
        || "open the pty slave (TIOCGPTPEER)".into(),
    )?;
    Ok((master, own(slave)))
}

const PR_CAP_AMBIENT: libc::c_int = 47;
const PR_CAP_AMBIENT_RAISE: libc::c_ulong = 2;

fn setup_process(p: &ProcessPlan, early_seccomp: Option<&libseccomp::ScmpFilterContext>) -> Result<()> {
    // Only stdio crosses into the container's program (runc closes the rest too); done
    // before any seccomp filter could refuse close_range.
    crate::cloexec_from(3);
    for r in &p.rlimits {
        let lim = libc::rlimit { rlim_cur: r.soft.unwrap_or(libc::RLIM_INFINITY), rlim_max: r.hard.unwrap_or(libc::RLIM_INFINITY) };
        ok(unsafe { libc::setrlimit(r.resource as _, &lim) }, || format!("setrlimit {}", r.resource))
            .map_err(|e| e.with_field(r.field.clone()))?;
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
    let cwd = cstring(&p.cwd);
    ok(unsafe { libc::chdir(cwd.as_ptr()) }, || format!("chdir {}", p.cwd)).map_err(|e| e.with_field("process.cwd"))?;
    if let Some(caps) = &p.capabilities {
        let mask = if last >= 63 { u64::MAX } else { (1u64 << (last + 1)) - 1 };
        ok(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) }, || "prctl PR_SET_KEEPCAPS".into())?;
        tsbox_sys::sys::capset(caps.effective & mask, caps.permitted & mask, caps.inheritable & mask)
            .map_err(|e| e.with_field("process.capabilities"))?;
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
    Ok(())
}

/// args[0] as execve needs it: a path, or looked up on the process's own PATH.
fn resolve_program(p: &ProcessPlan) -> Result<String> {
    let Some(arg0) = p.args.first() else {
        return Err(SysError::new("no program to run", libc::EINVAL).with_field("process.args"));
    };
    if arg0.contains('/') {
        return Ok(arg0.clone());
    }
    let path = p.env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{dir}/{arg0}");
        let c = cstring(&candidate);
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
            return Ok(candidate);
        }
    }
    Err(SysError::new(format!("exec {arg0}: not found in PATH"), libc::ENOENT).with_field("process.args[0]"))
}

fn exec(p: &ProcessPlan) -> Result<()> {
    let program = resolve_program(p)?;
    let prog = cstring(&program);
    let args: Vec<_> = p.args.iter().map(|a| cstring(a)).collect();
    let env: Vec<_> = p.env.iter().map(|e| cstring(e)).collect();
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Err(SysError::last(format!("exec {program}")).with_field("process.args[0]"))
}
