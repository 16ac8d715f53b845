//! The control socket: clients (the tsbox daemon, `tsbox` CLI invocations) send one JSON
//! request per line, with the container's stdio fds attached as SCM_RIGHTS; answers go
//! back to the asker, exit events to every client. Handling is sequential: this process
//! is single-threaded by design (docs/architecture.md), and container setup takes milliseconds.

use crate::init;
use crate::plan::{ContainerPlan, ExecPlan};
use crate::sync::{self, FromChild, ToChild};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use tsbox_sys::fd::{recv_with_fds, send_with_fds};
use tsbox_sys::sys::{clone3, clone3_into, pidfd_send_signal, Forked};
use tsbox_sys::{check, fd::own, Result, SysError};

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Op {
    Create {
        container: String,
        plan: Box<ContainerPlan>,
        fds: usize,
        /// The caller reaps the init (see `CallerReaps`).
        #[serde(default, rename = "callerReaps")]
        caller_reaps: bool,
    },
    /// createRuntime hooks ran; carry on with the create.
    Resume {
        container: String,
    },
    Start {
        container: String,
    },
    Exec {
        container: String,
        exec: String,
        plan: Box<ExecPlan>,
        fds: usize,
        #[serde(default, rename = "callerReaps")]
        caller_reaps: bool,
    },
    Signal {
        container: String,
        exec: Option<String>,
        signal: i32,
    },
    State,
    /// Drop a stopped (or never started) container; kills its init first if needed.
    Forget {
        container: String,
    },
    /// Drop an exec that has exited.
    ForgetExec {
        container: String,
        exec: String,
    },
    Shutdown,
}

#[derive(Deserialize)]
struct Envelope {
    id: u64,
    #[serde(flatten)]
    op: Value,
}

#[derive(Clone, Copy, PartialEq)]
enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

struct Process {
    pid: i32,
    pidfd: OwnedFd,
    status: Status,
    exit_status: Option<i32>,
    /// Not our child: its exit is seen on its pidfd, its status is the caller's to know.
    foreign: bool,
}

struct Container {
    init: Process,
    oom: Option<crate::oom::OomWatch>,
    /// The init's end of setup: held until Start releases the gate.
    sync: Option<OwnedFd>,
    execs: HashMap<String, Process>,
}

/// The longest request line accepted (a plan with a large seccomp profile is ~100 KiB).
const MAX_LINE: usize = 8 << 20;
/// Fds a client may have sent ahead of the requests that take them.
const MAX_PENDING_FDS: usize = 64;

pub struct Client {
    /// False once the peer is gone; the main loop drops such clients after each round.
    pub alive: bool,
    fd: OwnedFd,
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
}

pub struct Sandbox {
    containers: HashMap<String, Container>,
    /// pid → (container, exec id) for every process we started and not yet reaped.
    by_pid: HashMap<i32, (String, Option<String>)>,
    pub shutdown: bool,
}

fn err_json(e: &SysError) -> Value {
    json!({ "step": e.step, "errno": e.errno, "errnoName": e.errno_name(), "field": e.field, "message": e.to_string() })
}

fn proto_err(msg: String) -> SysError {
    SysError::new(msg, libc::EINVAL)
}

impl Client {
    pub fn new(fd: OwnedFd) -> Client {
        Client { alive: true, fd, buf: Vec::new(), fds: Vec::new() }
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads what is available; returns complete lines, or None when the peer is gone
    /// or broke the protocol (a line longer than MAX_LINE, too many fds at once).
    pub fn read_lines(&mut self) -> Option<Vec<Vec<u8>>> {
        // On the stack: a fresh zeroed heap chunk per read stayed resident in the heap of
        // every sandbox (poll is level-triggered, so more than this is read next round).
        let mut chunk = [0u8; 16 * 1024];
        match recv_with_fds(self.fd.as_raw_fd(), &mut chunk, &mut self.fds) {
            Ok(0) => return None,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.errno == libc::EAGAIN => return Some(Vec::new()),
            Err(_) => return None,
        }
        if self.fds.len() > MAX_PENDING_FDS || (self.buf.len() > MAX_LINE && !self.buf.contains(&b'\n')) {
            return None;
        }
        let mut lines = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            lines.push(line[..line.len() - 1].to_vec());
        }
        Some(lines)
    }

    /// Sends without ever blocking: the socket is non-blocking, and a client that lets its
    /// receive buffer fill up (hundreds of KiB of unread events) is dropped rather than
    /// allowed to stall every other client and the reaping.
    pub fn send(&mut self, v: &Value) {
        let mut bytes = v.to_string().into_bytes();
        bytes.push(b'\n');
        let mut off = 0;
        while off < bytes.len() && self.alive {
            match send_with_fds(self.fd.as_raw_fd(), &bytes[off..], &[]) {
                Ok(n) => off += n,
                Err(_) => self.alive = false,
            }
        }
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox { containers: HashMap::new(), by_pid: HashMap::new(), shutdown: false }
    }

    /// Handles one request line from `client`; returns the answer to send back.
    pub fn handle(&mut self, client: &mut Client, line: &[u8]) -> Value {
        // A request we cannot read must not leave its fds for the next one to take.
        let env: Envelope = match serde_json::from_slice(line) {
            Ok(e) => e,
            Err(e) => {
                client.fds.clear();
                return json!({ "id": null, "err": err_json(&proto_err(format!("bad request: {e}"))) });
            }
        };
        let id = env.id;
        let op: Op = match serde_json::from_value(env.op) {
            Ok(op) => op,
            Err(e) => {
                client.fds.clear();
                return json!({ "id": id, "err": err_json(&proto_err(format!("bad request: {e}"))) });
            }
        };
        match self.dispatch(client, op) {
            Ok(v) => json!({ "id": id, "ok": v }),
            Err(e) => json!({ "id": id, "err": err_json(&e) }),
        }
    }

    fn take_fds(client: &mut Client, n: usize) -> Result<Vec<OwnedFd>> {
        if client.fds.len() < n {
            return Err(proto_err(format!("request announced {n} fds, {} arrived", client.fds.len())));
        }
        Ok(client.fds.drain(..n).collect())
    }

    fn dispatch(&mut self, client: &mut Client, op: Op) -> Result<Value> {
        match op {
            Op::Create { container, plan, fds, caller_reaps } => {
                let stdio = Self::take_fds(client, fds)?;
                self.create(container, &plan, stdio, caller_reaps)
            }
            Op::Resume { container } => self.resume(&container),
            Op::Start { container } => self.start(&container),
            Op::Exec { container, exec, plan, fds, caller_reaps } => {
                let stdio = Self::take_fds(client, fds)?;
                self.exec(&container, exec, &plan, stdio, caller_reaps)
            }
            Op::Signal { container, exec, signal } => self.signal(&container, exec.as_deref(), signal),
            Op::State => Ok(self.state()),
            Op::Forget { container } => self.forget(&container),
            Op::ForgetExec { container, exec } => {
                let c = self.container(&container)?;
                match c.execs.get(&exec) {
                    Some(p) if p.status != Status::Stopped => Err(SysError::new(format!("exec {exec} is still running"), libc::EBUSY)),
                    Some(_) => {
                        c.execs.remove(&exec);
                        Ok(json!({}))
                    }
                    None => Ok(json!({})),
                }
            }
            Op::Shutdown => {
                self.shutdown = true;
                Ok(json!({}))
            }
        }
    }

    fn create(&mut self, id: String, plan: &ContainerPlan, stdio: Vec<OwnedFd>, caller_reaps: bool) -> Result<Value> {
        if self.containers.contains_key(&id) {
            return Err(SysError::new(format!("container {id} already exists in this sandbox"), libc::EEXIST));
        }
        // Hooks without a timeout of their own are bounded by the step's deadline.
        let hook_secs: u64 = plan.hooks.create_container.iter().chain(&plan.hooks.start_container).filter_map(|h| h.timeout.map(u64::from)).sum();
        let (parent_end, child_end) = sync::pair(plan.setup_deadline.unwrap_or(sync::SETUP_DEADLINE_SECS) + hook_secs)?;
        // Only the user namespace is made here (its maps are written from outside); the
        // rest are made or joined by the child, see init::container_init.
        let (forked, joined) = clone_in_cgroup(plan.clone_flags & libc::CLONE_NEWUSER as u64, &plan.cgroup_procs);
        let (pid, pidfd) = match forked.map_err(|e| e.with_field("linux.namespaces"))? {
            Forked::Child => {
                let keep: Vec<RawFd> = std::iter::once(child_end.as_raw_fd()).chain(stdio.iter().map(|f| f.as_raw_fd())).collect();
                init::isolate_child(&keep);
                init::container_init(plan, child_end, stdio)
            }
            Forked::Parent { pid, pidfd } => (pid, own(pidfd)),
        };
        drop(child_end);
        drop(stdio);
        let mut process = Process { pid, pidfd, status: Status::Creating, exit_status: None, foreign: false };
        let result = (|| -> Result<()> {
            if plan.clone_flags & libc::CLONE_NEWUSER as u64 != 0 {
                write_id_maps(pid, plan)?;
            }
            if !joined {
                join_cgroups(pid, &plan.cgroup_procs)?;
            }
            // Written here: the child is not dumpable, so in a user namespace it could not
            // write its own /proc files; what it forks inherits the score.
            if let Some(adj) = plan.oom_score_adj {
                let path = format!("/proc/{pid}/oom_score_adj");
                std::fs::write(&path, adj.to_string())
                    .map_err(|e| SysError::new(format!("write {path}"), e.raw_os_error().unwrap_or(libc::EIO)).with_field("process.oomScoreAdj"))?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            kill_and_reap(&process);
            return Err(e);
        }
        // From Go until the first process is collected: the init it leaves behind goes to
        // the caller's reaper instead of us.
        let orphans = CallerReaps::begin(caller_reaps);
        if let Err(e) = sync::send(parent_end.as_raw_fd(), &ToChild::Go { pid }) {
            kill_and_reap(&process);
            return Err(e);
        }
        let setup = next_setup_message(&mut process, parent_end.as_raw_fd());
        drop(orphans);
        process.foreign = caller_reaps;
        let answer = match setup {
            Ok(FromChild::Hooks) => json!({ "pid": process.pid, "stage": "hooks" }),
            Ok(FromChild::Ready) => {
                process.status = Status::Created;
                json!({ "pid": process.pid, "stage": "created" })
            }
            Ok(FromChild::Error { step, errno, field }) => {
                kill_and_reap(&process);
                return Err(SysError { step, errno, field });
            }
            Ok(FromChild::Spawned { .. }) => {
                kill_and_reap(&process);
                return Err(SysError::new("unexpected message on setup channel", libc::EPROTO));
            }
            Err(e) => {
                kill_and_reap(&process);
                return Err(e);
            }
        };
        self.by_pid.insert(process.pid, (id.clone(), None));
        // Without a watch there are no OOM events, but the container runs: say so in the log.
        let oom = plan.oom_watch.as_ref().and_then(|(v, dir)| match crate::oom::OomWatch::new(*v, dir) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("tsbox-sandbox: container {id}: no OOM events: {e}");
                None
            }
        });
        self.containers.insert(id, Container { init: process, oom, sync: Some(parent_end), execs: HashMap::new() });
        Ok(answer)
    }

    fn container(&mut self, id: &str) -> Result<&mut Container> {
        self.containers.get_mut(id).ok_or_else(|| SysError::new(format!("container {id} does not exist"), libc::ENOENT))
    }

    /// Takes a container out of the table when its setup failed half way.
    fn abandon(&mut self, id: &str) {
        if let Some(c) = self.containers.remove(id) {
            self.by_pid.remove(&c.init.pid);
            kill_and_reap(&c.init);
        }
    }

    fn resume(&mut self, id: &str) -> Result<Value> {
        let c = self.container(id)?;
        if c.init.status != Status::Creating {
            return Err(SysError::new(format!("container {id} is not waiting for hooks"), libc::EINVAL));
        }
        let Some(sync_fd) = c.sync.as_ref().map(|f| f.as_raw_fd()) else {
            return Err(SysError::new(format!("container {id} lost its setup channel"), libc::EPIPE));
        };
        let first = c.init.pid;
        let outcome = sync::send(sync_fd, &ToChild::Continue).and_then(|_| next_setup_message(&mut c.init, sync_fd));
        let now = c.init.pid;
        if now != first {
            self.by_pid.remove(&first);
            self.by_pid.insert(now, (id.to_string(), None));
        }
        match outcome {
            Ok(FromChild::Ready) => {
                let c = self.container(id)?;
                c.init.status = Status::Created;
                Ok(json!({ "pid": c.init.pid, "stage": "created" }))
            }
            Ok(FromChild::Error { step, errno, field }) => {
                self.abandon(id);
                Err(SysError { step, errno, field })
            }
            Ok(FromChild::Hooks | FromChild::Spawned { .. }) => {
                self.abandon(id);
                Err(SysError::new("unexpected message on setup channel", libc::EPROTO))
            }
            Err(e) => {
                self.abandon(id);
                Err(e)
            }
        }
    }

    fn start(&mut self, id: &str) -> Result<Value> {
        let c = self.container(id)?;
        if c.init.status != Status::Created {
            return Err(SysError::new(format!("container {id} is {}, not created", c.init.status.name()), libc::EINVAL));
        }
        let Some(sync_fd) = c.sync.take() else {
            return Err(SysError::new(format!("container {id} lost its setup channel"), libc::EPIPE));
        };
        let pid = c.init.pid;
        c.init.status = Status::Running;
        sync::send(sync_fd.as_raw_fd(), &ToChild::Start)?;
        // End-of-file means execve succeeded (the child's end was close-on-exec).
        match sync::recv::<FromChild>(sync_fd.as_raw_fd()) {
            Ok(None) => Ok(json!({ "pid": pid })),
            Ok(Some(FromChild::Error { step, errno, field })) => Err(SysError { step, errno, field }),
            Ok(Some(_)) => Err(SysError::new("unexpected message on setup channel", libc::EPROTO)),
            Err(e) => {
                // Stuck before execve (a startContainer hook that never ends): stop it.
                if let Some(c) = self.containers.get(id) {
                    let _ = pidfd_send_signal(c.init.pidfd.as_raw_fd(), libc::SIGKILL);
                }
                Err(e)
            }
        }
    }

    fn exec(&mut self, id: &str, exec_id: String, plan: &ExecPlan, stdio: Vec<OwnedFd>, caller_reaps: bool) -> Result<Value> {
        let c = self.container(id)?;
        if c.execs.contains_key(&exec_id) {
            return Err(SysError::new(format!("exec {exec_id} already exists in container {id}"), libc::EEXIST));
        }
        if c.init.status != Status::Running {
            return Err(SysError::new(format!("container {id} is {}, not running", c.init.status.name()), libc::EINVAL));
        }
        let init_pid = c.init.pid;
        let init_pidfd = c.init.pidfd.as_raw_fd();
        let ns_fds = open_container_namespaces(init_pid)?;
        // Opened by pid: they are the init's only if it still lives now (a process whose
        // caller reaps it can be collected, and its pid reused, the moment it exits).
        if pidfd_send_signal(init_pidfd, 0).is_err() {
            return Err(SysError::new(format!("container {id} is stopped"), libc::ESRCH));
        }
        let (parent_end, child_end) = sync::pair(sync::SETUP_DEADLINE_SECS)?;
        // The first child stays in our pid namespace (see init::exec_init).
        let (forked, joined) = clone_in_cgroup(0, &plan.cgroup_procs);
        let (pid, pidfd) = match forked? {
            Forked::Child => {
                let keep: Vec<RawFd> = std::iter::once(child_end.as_raw_fd())
                    .chain(stdio.iter().map(|f| f.as_raw_fd()))
                    .chain(ns_fds.iter().map(|(_, f)| f.as_raw_fd()))
                    .collect();
                init::isolate_child(&keep);
                init::exec_init(&plan.process, ns_fds, child_end, stdio)
            }
            Forked::Parent { pid, pidfd } => (pid, own(pidfd)),
        };
        drop(child_end);
        drop(stdio);
        drop(ns_fds);
        let joiner = Process { pid, pidfd, status: Status::Running, exit_status: None, foreign: false };
        // Its child inherits the cgroups, so it is born inside them too.
        let joining = if joined { Ok(()) } else { join_cgroups(pid, &plan.cgroup_procs) };
        let orphans = CallerReaps::begin(caller_reaps);
        if let Err(e) = joining.and_then(|_| sync::send(parent_end.as_raw_fd(), &ToChild::Go { pid })) {
            kill_and_reap(&joiner);
            return Err(e);
        }
        let (pid, pidfd) = match sync::recv_with_fds::<FromChild>(parent_end.as_raw_fd()) {
            Ok(Some((FromChild::Spawned { pid }, mut fds))) if fds.len() == 1 => (pid, fds.remove(0)),
            Ok(Some((FromChild::Error { step, errno, field }, _))) => {
                kill_and_reap(&joiner);
                return Err(SysError { step, errno, field });
            }
            Ok(_) | Err(_) => {
                kill_and_reap(&joiner);
                return Err(SysError::new("exec setup ended unexpectedly", libc::EPROTO));
            }
        };
        let mut status = 0;
        unsafe { libc::waitpid(joiner.pid, &mut status, 0) };
        drop(orphans);
        let process = Process { pid, pidfd, status: Status::Running, exit_status: None, foreign: caller_reaps };
        match sync::recv::<FromChild>(parent_end.as_raw_fd()) {
            Ok(None) => {}
            Ok(Some(FromChild::Error { step, errno, field })) => {
                kill_and_reap(&process);
                return Err(SysError { step, errno, field });
            }
            Ok(Some(_)) | Err(_) => {
                kill_and_reap(&process);
                return Err(SysError::new("exec setup ended unexpectedly", libc::EPROTO));
            }
        }
        self.by_pid.insert(pid, (id.to_string(), Some(exec_id.clone())));
        self.container(id)?.execs.insert(exec_id, process);
        Ok(json!({ "pid": pid }))
    }

    fn signal(&mut self, id: &str, exec: Option<&str>, signal: i32) -> Result<Value> {
        let c = self.container(id)?;
        let p = match exec {
            Some(e) => c.execs.get(e).ok_or_else(|| SysError::new(format!("exec {e} does not exist in container {id}"), libc::ENOENT))?,
            None => &c.init,
        };
        if p.status == Status::Stopped {
            return Err(SysError::new("process already finished", libc::ESRCH));
        }
        pidfd_send_signal(p.pidfd.as_raw_fd(), signal)?;
        Ok(json!({}))
    }

    fn state(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (id, c) in &self.containers {
            let execs: serde_json::Map<String, Value> = c.execs.iter().map(|(e, p)| (e.clone(), process_json(p))).collect();
            let mut v = process_json(&c.init);
            v["execs"] = Value::Object(execs);
            out.insert(id.clone(), v);
        }
        json!({ "pid": std::process::id(), "containers": out })
    }

    fn forget(&mut self, id: &str) -> Result<Value> {
        let c = self.container(id)?;
        for p in c.execs.values().filter(|p| p.status != Status::Stopped) {
            kill_and_reap(p);
        }
        if c.init.status != Status::Stopped {
            kill_and_reap(&c.init);
        }
        if let Some(c) = self.containers.remove(id) {
            self.by_pid.remove(&c.init.pid);
            for p in c.execs.values() {
                self.by_pid.remove(&p.pid);
            }
        }
        Ok(json!({}))
    }

    /// The OOM watch fds to poll, with their container.
    pub fn oom_fds(&self) -> Vec<(RawFd, String)> {
        self.containers.iter().filter_map(|(id, c)| c.oom.as_ref().map(|w| (w.fd(), id.clone()))).collect()
    }

    /// A watch fd became readable: the OOM event to broadcast, if it was one.
    pub fn oom_fired(&mut self, id: &str) -> Option<Value> {
        let c = self.containers.get_mut(id)?;
        let fired = c.oom.as_mut().map(|w| w.fired()).unwrap_or(false);
        fired.then(|| json!({ "event": "oom", "container": id }))
    }

    /// pidfds of the live processes their callers reap: poll them.
    pub fn foreign_pidfds(&self) -> Vec<RawFd> {
        self.containers
            .values()
            .flat_map(|c| std::iter::once(&c.init).chain(c.execs.values()))
            .filter(|p| p.foreign && p.status != Status::Stopped)
            .map(|p| p.pidfd.as_raw_fd())
            .collect()
    }

    /// A process its caller reaps has exited (its pidfd said so): its status is the
    /// caller's to know (reported as 255). Found by its pidfd, not its pid: the pid may
    /// already name another process.
    pub fn foreign_exited(&mut self, pidfd: RawFd) -> Vec<Value> {
        let found = self.containers.iter().find_map(|(cid, c)| {
            if c.init.pidfd.as_raw_fd() == pidfd {
                return Some((cid.clone(), None, c.init.pid));
            }
            c.execs.iter().find(|(_, p)| p.pidfd.as_raw_fd() == pidfd).map(|(e, p)| (cid.clone(), Some(e.clone()), p.pid))
        });
        let Some((cid, exec, pid)) = found else { return Vec::new() };
        if self.by_pid.get(&pid) == Some(&(cid.clone(), exec.clone())) {
            self.by_pid.remove(&pid);
        }
        self.exited(cid, exec, pid, None)
    }

    /// Collects every exited child; returns the exit events to broadcast.
    pub fn reap(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let mut status = 0;
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                continue;
            };
            let Some((cid, exec)) = self.by_pid.remove(&pid) else { continue };
            events.extend(self.exited(cid, exec, pid, Some(code)));
        }
        events
    }

    /// Marks one of our processes stopped; its oom event (if any) and exit event, in order.
    fn exited(&mut self, cid: String, exec: Option<String>, pid: i32, code: Option<i32>) -> Vec<Value> {
        if let Some(c) = self.containers.get_mut(&cid) {
            let p = match &exec {
                Some(e) => c.execs.get_mut(e),
                None => Some(&mut c.init),
            };
            if let Some(p) = p {
                p.status = Status::Stopped;
                p.exit_status = code;
            }
            if exec.is_none() {
                c.sync = None;
            }
        }
        // cgroup v2 counts the OOM kill in memory.events before the victim dies, but
        // tells inotify later (kernfs notifies from a work item): look at the count
        // now, so the oom event still goes out before this exit.
        let mut events: Vec<Value> = self.oom_fired(&cid).into_iter().collect();
        events.push(json!({ "event": "exit", "container": cid, "exec": exec, "pid": pid, "status": code.unwrap_or(255) }));
        events
    }
}

fn process_json(p: &Process) -> Value {
    json!({ "pid": p.pid, "status": p.status.name(), "exitStatus": p.exit_status })
}

/// The next message of a container's setup. The first child announces the init it
/// forked, with a pidfd it opened while still the init's parent (so it names the init
/// whoever reaps it), and exits: from then on `process` is the init.
fn next_setup_message(process: &mut Process, fd: RawFd) -> Result<FromChild> {
    loop {
        let (msg, mut fds) = match sync::recv_with_fds::<FromChild>(fd)? {
            Some(m) => m,
            None => return Err(SysError::new("container init exited during setup", libc::ECHILD)),
        };
        let FromChild::Spawned { pid } = msg else { return Ok(msg) };
        let mut status = 0;
        unsafe { libc::waitpid(process.pid, &mut status, 0) };
        // Without its pidfd the init cannot be named safely; it ends when our end of the
        // channel closes.
        if fds.len() != 1 {
            return Err(SysError::new("the container's first process sent no pidfd for the init", libc::EPROTO));
        }
        *process = Process { pid, pidfd: fds.remove(0), status: process.status, exit_status: None, foreign: false };
    }
}

/// Kills a process we started and collects it, so nothing is left of a failed setup.
fn kill_and_reap(p: &Process) {
    let _ = pidfd_send_signal(p.pidfd.as_raw_fd(), libc::SIGKILL);
    if p.foreign {
        return; // its caller collects it
    }
    let mut status = 0;
    unsafe { libc::waitpid(p.pid, &mut status, 0) };
}

/// The init's namespaces that differ from ours, user namespace first (it grants the
/// rights to enter the others), mount namespace last (it changes root and cwd).
fn open_container_namespaces(init_pid: i32) -> Result<Vec<(i32, OwnedFd)>> {
    let kinds = [
        ("user", libc::CLONE_NEWUSER),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("mnt", libc::CLONE_NEWNS),
    ];
    let mut out = Vec::new();
    for (kind, flag) in kinds {
        let theirs = format!("/proc/{init_pid}/ns/{kind}");
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(format!("/proc/self/ns/{kind}"))) else {
            return Err(SysError::new(format!("stat {theirs}"), libc::ESRCH));
        };
        use std::os::unix::fs::MetadataExt;
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let c = tsbox_sys::sys::cstring(&theirs);
        let fd = own(check(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }, || format!("open {theirs}"))?);
        out.push((flag, fd));
    }
    Ok(out)
}

fn write_id_maps(pid: i32, plan: &ContainerPlan) -> Result<()> {
    let render = |maps: &[crate::plan::IdMapping]| maps.iter().map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size)).collect::<String>();
    for (file, maps, field) in [("uid_map", &plan.uid_mappings, "linux.uidMappings"), ("gid_map", &plan.gid_mappings, "linux.gidMappings")] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, render(maps)).map_err(|e| SysError::new(format!("write {path}"), e.raw_os_error().unwrap_or(libc::EIO)).with_field(field))?;
    }
    Ok(())
}

/// While alive, orphans go past us to the nearest subreaper above (the caller's: the
/// runc-v2 shim, Docker's containerd shim): what a runc-compatible caller expects of a
/// process whose pid it was given with --pid-file, which it waits for as its own child.
/// Only processes the request leaves behind are orphaned meanwhile: requests are handled
/// one at a time, and a container's own orphans go to its pid namespace's init.
struct CallerReaps(bool);

impl CallerReaps {
    fn begin(on: bool) -> CallerReaps {
        if on {
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) };
        }
        CallerReaps(on)
    }
}

impl Drop for CallerReaps {
    fn drop(&mut self) {
        if self.0 {
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        }
    }
}

/// The container's one cgroup v2 directory, open, when that is all it joins (a pure v2
/// host); v1 and hybrid hosts have a directory per hierarchy, joined by writes.
fn unified_cgroup(procs: &[String]) -> Option<OwnedFd> {
    let [file] = procs else { return None };
    let dir = std::path::Path::new(file).parent()?;
    let fd = std::fs::File::open(dir).map(OwnedFd::from).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let is_v2 = unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } == 0 && st.f_type == libc::CGROUP2_SUPER_MAGIC;
    is_v2.then_some(fd)
}

/// clone3 straight into the container's cgroup where the host allows it; the bool says
/// whether the child is there already (else `join_cgroups` moves it).
fn clone_in_cgroup(flags: u64, procs: &[String]) -> (Result<Forked>, bool) {
    if let Some(cg) = unified_cgroup(procs) {
        // On any failure (a kernel before 5.7, a cgroup that cannot take the process) the
        // plain clone and the write say what is wrong, with the cgroup's field.
        if let Ok(forked) = clone3_into(flags, Some(cg.as_raw_fd())) {
            return (Ok(forked), true);
        }
    }
    (clone3(flags), false)
}

fn join_cgroups(pid: i32, procs: &[String]) -> Result<()> {
    for file in procs {
        std::fs::write(file, pid.to_string())
            .map_err(|e| SysError::new(format!("join cgroup: write {file}"), e.raw_os_error().unwrap_or(libc::EIO)).with_field("linux.cgroupsPath"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client on one end of a socket pair; the other end is the test's, as the daemon's.
    fn client() -> (Client, OwnedFd) {
        let mut fds = [0; 2];
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0, "socketpair: {}", std::io::Error::last_os_error());
        (Client::new(own(fds[0])), own(fds[1]))
    }

    fn ask(sb: &mut Sandbox, c: &mut Client, line: &str) -> Value {
        sb.handle(c, line.as_bytes())
    }

    fn errno(v: &Value) -> i64 {
        v["err"]["errno"].as_i64().unwrap_or(0)
    }

    #[test]
    fn answers_by_id_and_refuses_what_it_cannot_read() {
        let mut sb = Sandbox::new();
        let (mut c, _peer) = client();
        let st = ask(&mut sb, &mut c, r#"{"id":1,"op":"state"}"#);
        assert_eq!(st, json!({ "id": 1, "ok": { "pid": std::process::id(), "containers": {} } }));
        let bad = ask(&mut sb, &mut c, "not json");
        assert_eq!((bad["id"].clone(), errno(&bad)), (Value::Null, i64::from(libc::EINVAL)));
        let unknown = ask(&mut sb, &mut c, r#"{"id":2,"op":"frobnicate"}"#);
        assert_eq!((unknown["id"].clone(), errno(&unknown)), (json!(2), i64::from(libc::EINVAL)));
        assert!(unknown["err"]["message"].as_str().unwrap_or_default().starts_with("bad request"));
        for op in [r#""op":"start","container":"c9""#, r#""op":"signal","container":"c9","exec":null,"signal":9"#, r#""op":"forget","container":"c9""#] {
            let r = ask(&mut sb, &mut c, &format!("{{\"id\":3,{op}}}"));
            assert_eq!(
                (errno(&r), r["err"]["message"].as_str().unwrap_or_default()),
                (i64::from(libc::ENOENT), "container c9 does not exist: ENOENT (no such file or directory)"),
                "{op}"
            );
        }
        assert!(!sb.shutdown);
        assert_eq!(ask(&mut sb, &mut c, r#"{"id":4,"op":"shutdown"}"#), json!({ "id": 4, "ok": {} }));
        assert!(sb.shutdown);
    }

    #[test]
    fn fds_of_a_request_it_cannot_read_are_not_left_for_the_next() {
        let mut sb = Sandbox::new();
        let (mut c, peer) = client();
        let devnull = std::fs::File::open("/dev/null").map(OwnedFd::from).ok();
        let fds: Vec<RawFd> = devnull.iter().map(|f| f.as_raw_fd()).collect();
        assert_eq!(send_with_fds(peer.as_raw_fd(), b"{\"id\":1,\"op\":\"bogus\"}\n{\"id\":2,", &fds).ok(), Some(30));
        let lines = c.read_lines().unwrap_or_default();
        assert_eq!((lines.len(), c.fds.len()), (1, 1));
        assert_eq!(errno(&sb.handle(&mut c, &lines[0])), i64::from(libc::EINVAL));
        assert!(c.fds.is_empty());
        // The rest of the second line is kept for the next read.
        assert_eq!(send_with_fds(peer.as_raw_fd(), b"\"op\":\"state\"}\n", &[]).ok(), Some(14));
        assert_eq!(c.read_lines().unwrap_or_default(), vec![br#"{"id":2,"op":"state"}"#.to_vec()]);
        drop(peer);
        // A process another test forks holds a copy of every fd until its exec: wait for
        // the hang-up rather than read before it.
        let mut pfd = libc::pollfd { fd: c.raw(), events: libc::POLLIN, revents: 0 };
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 10_000) }, 1);
        assert_eq!(c.read_lines(), None);
    }

    #[test]
    fn signals_and_forgets_a_process_by_its_pidfd() {
        let mut sb = Sandbox::new();
        let (mut c, _peer) = client();
        let Ok(child) = std::process::Command::new("sleep").arg("60").spawn() else { panic!("spawn sleep") };
        let pid = child.id() as i32;
        let pidfd = tsbox_sys::sys::pidfd_open(pid).map(own).unwrap_or_else(|e| panic!("{e}"));
        let init = Process { pid, pidfd, status: Status::Running, exit_status: None, foreign: false };
        sb.containers.insert("c1".into(), Container { init, oom: None, sync: None, execs: HashMap::new() });
        let st = ask(&mut sb, &mut c, r#"{"id":1,"op":"state"}"#);
        assert_eq!(st["ok"]["containers"]["c1"], json!({ "pid": pid, "status": "running", "exitStatus": null, "execs": {} }));
        let missing = ask(&mut sb, &mut c, r#"{"id":2,"op":"signal","container":"c1","exec":"e1","signal":0}"#);
        assert_eq!(missing["err"]["message"], "exec e1 does not exist in container c1: ENOENT (no such file or directory)");
        assert_eq!(ask(&mut sb, &mut c, r#"{"id":3,"op":"signal","container":"c1","exec":null,"signal":0}"#), json!({ "id": 3, "ok": {} }));
        assert_eq!(ask(&mut sb, &mut c, r#"{"id":4,"op":"forget","container":"c1"}"#)["ok"], json!({}));
        // Forgetting a running init kills and reaps it.
        assert_eq!(unsafe { libc::kill(pid, 0) }, -1);
        assert_eq!(ask(&mut sb, &mut c, r#"{"id":5,"op":"state"}"#)["ok"]["containers"], json!({}));
    }
}
