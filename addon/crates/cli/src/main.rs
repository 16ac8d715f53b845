//! `tsbox`, the OCI runtime command line. runc-compatible callers (containerd's runc-v2
//! shim, Docker) run it several times per container, so `state`, `start`, `kill`, `ps`,
//! `delete` and `features` are answered here, from the engine's record of the container
//! and its tsbox-sandbox, without starting Node (~60 ms per command on a small host).
//! Everything else (create, exec), and the cases that need the engine (hooks, `kill --all`,
//! a paused container, signal names, any flag not known here), is handed to the Node CLI (src/cli/main.ts) by exec with the same arguments:
//! that CLI is the reference, and a test runs each command both ways and compares.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Set to anything: every command goes to the Node CLI (the differential test uses it).
const FORCE_NODE: &str = "TSBOX_CLI_NODE";

struct Global {
    root: String,
    log: Option<String>,
    log_json: bool,
}

/// Why a command was not answered here.
enum Fail {
    /// The Node CLI answers it (with the same arguments).
    Node,
    /// An error, reported as the Node CLI reports it.
    Error(String),
}

type Res<T> = Result<T, Fail>;

fn err<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail::Error(msg.into()))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::env::var_os(FORCE_NODE).is_some() {
        return node_cli(&args);
    }
    let Some((global, cmd, rest)) = parse_global(&args) else { return node_cli(&args) };
    let answered = match cmd {
        "state" => state(&global, rest),
        "start" => start(&global, rest),
        "kill" => kill(&global, rest),
        "ps" => ps(&global, rest),
        "features" => features(rest),
        "delete" => delete(&global, rest),
        _ => Err(Fail::Node),
    };
    match answered {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Node) => node_cli(&args),
        Err(Fail::Error(msg)) => {
            log_error(&global, &msg);
            eprintln!("tsbox: {msg}");
            ExitCode::from(1)
        }
    }
}

/// runc's global flags, before the command; None for anything this binary does not know.
fn parse_global(args: &[String]) -> Option<(Global, &str, &[String])> {
    let mut g = Global { root: "/run/tsbox".into(), log: None, log_json: false };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if !a.starts_with('-') {
            return Some((g, a, &args[i + 1..]));
        }
        let (name, inline) = match a.trim_start_matches('-').split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (a.trim_start_matches('-'), None),
        };
        match name {
            "debug" | "systemd-cgroup" if inline.is_none() => {}
            "root" | "log" | "log-format" | "criu" | "rootless" => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i)?.clone()
                    }
                };
                match name {
                    "root" => g.root = value,
                    "log" => g.log = Some(value),
                    "log-format" => g.log_json = value == "json",
                    _ => {}
                }
            }
            _ => return None,
        }
        i += 1;
    }
    None
}

/// The one argument a command takes: a container id, checked as the engine checks it.
fn one_id(rest: &[String]) -> Res<&str> {
    match rest {
        [id] if !id.starts_with('-') => valid_id(id),
        _ => Err(Fail::Node),
    }
}

fn valid_id(id: &str) -> Res<&str> {
    let ok = !id.is_empty() && id.len() <= 1024 && id != "." && id != ".." && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(id)
    } else {
        Err(Fail::Node) // the Node CLI words the refusal
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    id: String,
    bundle: String,
    status: String,
    pid: i64,
    sandbox_pid: i64,
    sandbox_start_time: Option<String>,
    socket: String,
    created_at: String,
    owner: String,
    oci_version: String,
    annotations: Value,
    cgroup: Option<CgroupRecord>,
}

#[derive(Deserialize)]
struct CgroupRecord {
    dirs: Vec<CgroupDir>,
    /// Directories its create made, parents included, deepest last.
    created: Vec<String>,
}

#[derive(Deserialize)]
struct CgroupDir {
    dir: String,
}

/// A container's record as the engine wrote it (src/sandbox/store.ts), raw and parsed:
/// a write changes only the fields it means to.
struct Loaded {
    raw: Value,
    rec: Record,
}

fn meta_path(g: &Global, id: &str) -> PathBuf {
    Path::new(&g.root).join(id).join("meta.json")
}

fn read_record(g: &Global, id: &str) -> Res<Loaded> {
    let path = meta_path(g, id);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return err(format!("container {id} does not exist")),
        Err(_) => return Err(Fail::Node),
    };
    let raw: Value = serde_json::from_str(&text).map_err(|_| Fail::Node)?;
    let rec = Record::deserialize(&raw).map_err(|_| Fail::Node)?;
    Ok(Loaded { raw, rec })
}

/// The container's status now: the record's, unless its sandbox says (or its absence
/// shows) that the init has exited. Read-only: the engine records the exit when it next
/// holds the container.
fn current_status(l: &Loaded) -> Res<String> {
    let r = &l.rec;
    if r.status == "stopped" || !same_process(r.sandbox_pid, r.sandbox_start_time.as_deref()) {
        return Ok("stopped".into());
    }
    let Ok(mut conn) = Conn::open(&r.socket) else { return Ok("stopped".into()) };
    let st = conn.ask(json!({ "op": "state" }))?;
    match st["containers"][&r.id]["status"].as_str() {
        None | Some("stopped") => Ok("stopped".into()),
        Some(_) => Ok(r.status.clone()),
    }
}

/// Field 22 of /proc/PID/stat, after the parenthesised command name.
fn start_time(pid: i64) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 2..)?.split(' ').nth(19).map(str::to_string)
}

fn same_process(pid: i64, recorded: Option<&str>) -> bool {
    pid > 0 && recorded.is_some() && start_time(pid).as_deref() == recorded
}

/// A connection to a sandbox's control socket: a JSON line each way per request; exit and
/// oom events that other requests caused are skipped.
struct Conn {
    lines: BufReader<UnixStream>,
    next: u64,
}

impl Conn {
    fn open(socket: &str) -> std::io::Result<Conn> {
        let s = UnixStream::connect(socket)?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        Ok(Conn { lines: BufReader::new(s), next: 1 })
    }

    fn ask(&mut self, op: Value) -> Res<Value> {
        let id = self.next;
        self.next += 1;
        let mut req = op;
        req["id"] = json!(id);
        req["fds"] = json!(0);
        let broken = |e: std::io::Error| Fail::Error(format!("tsbox-sandbox control socket: {e}"));
        self.lines.get_ref().write_all(format!("{req}\n").as_bytes()).map_err(broken)?;
        let mut line = String::new();
        loop {
            line.clear();
            if self.lines.read_line(&mut line).map_err(broken)? == 0 {
                return err("tsbox-sandbox closed its control socket");
            }
            let Ok(msg) = serde_json::from_str::<Value>(&line) else { continue };
            if msg["id"] != json!(id) {
                continue;
            }
            if let Some(e) = msg.get("err").filter(|e| !e.is_null()) {
                return err(e["message"].as_str().unwrap_or("tsbox-sandbox refused the request").to_string());
            }
            return Ok(msg["ok"].clone());
        }
    }

    /// Asks the sandbox to exit and waits until it has closed the connection.
    fn shutdown(mut self) -> Res<()> {
        let _ = self.ask(json!({ "op": "shutdown" }));
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut self.lines, &mut rest).map_err(|e| Fail::Error(format!("tsbox-sandbox control socket: {e}")))?;
        Ok(())
    }
}

fn connect(l: &Loaded) -> Res<Conn> {
    Conn::open(&l.rec.socket).map_err(|e| Fail::Error(format!("connect to the sandbox of container {}: {e}", l.rec.id)))
}

/// The container's flock, as the engine takes it; released when dropped.
fn lock(g: &Global, id: &str) -> Res<std::fs::File> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(Path::new(&g.root).join(id).join("lock"))
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Fail::Error(format!("container {id} does not exist")),
            _ => Fail::Error(format!("open the lock of container {id}: {e}")),
        })?;
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return err(format!("lock container {id}: {}", std::io::Error::last_os_error()));
    }
    Ok(f)
}

/// tmp + fsync + rename, as the engine writes it.
fn write_record(g: &Global, l: &Loaded) -> Res<()> {
    let dir = Path::new(&g.root).join(&l.rec.id);
    let tmp = dir.join(format!(".meta.json.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(serde_json::to_string_pretty(&l.raw).unwrap_or_default().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join("meta.json"))
    };
    write().map_err(|e| Fail::Error(format!("write the record of container {}: {e}", l.rec.id)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OciState<'a> {
    oci_version: &'a str,
    id: &'a str,
    status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<i64>,
    bundle: &'a str,
    annotations: &'a Value,
    created: &'a str,
    owner: &'a str,
}

fn state(g: &Global, rest: &[String]) -> Res<()> {
    let id = one_id(rest)?;
    let l = read_record(g, id)?;
    let status = current_status(&l)?;
    let r = &l.rec;
    let st = OciState {
        oci_version: &r.oci_version,
        id: &r.id,
        status: &status,
        pid: (r.pid != 0).then_some(r.pid),
        bundle: &r.bundle,
        annotations: &r.annotations,
        created: &r.created_at,
        owner: &r.owner,
    };
    println!("{}", serde_json::to_string_pretty(&st).unwrap_or_default());
    Ok(())
}

fn start(g: &Global, rest: &[String]) -> Res<()> {
    let id = one_id(rest)?;
    let _lock = lock(g, id)?;
    let mut l = read_record(g, id)?;
    // poststart hooks run on the host after the start: the engine's part. So is the
    // refusal of a bundle without a readable config.json. (The lock goes as we hand over.)
    if hooks(&l.rec.bundle, "poststart").unwrap_or(true) {
        return Err(Fail::Node);
    }
    let status = current_status(&l)?;
    if status != "created" {
        return err(format!("cannot start container {id}: it is {status}"));
    }
    connect(&l)?.ask(json!({ "op": "start", "container": id }))?;
    l.raw["status"] = json!("running");
    write_record(g, &l)
}

fn kill(g: &Global, rest: &[String]) -> Res<()> {
    // Flags (--all) and signal names: the Node CLI.
    let (id, signal) = match rest {
        [id] => (id, 15),
        [id, sig] => (id, sig.parse::<i32>().ok().filter(|s| (1..=64).contains(s)).ok_or(Fail::Node)?),
        _ => return Err(Fail::Node),
    };
    if id.starts_with('-') {
        return Err(Fail::Node);
    }
    let id = valid_id(id)?;
    let l = read_record(g, id)?;
    match current_status(&l)?.as_str() {
        "created" | "running" => {}
        // A frozen container is thawed after SIGKILL: the engine's part.
        "paused" => return Err(Fail::Node),
        // runc's words, which the runc-v2 shim reads as NotFound.
        "stopped" => return err(format!("cannot kill container {id}: container not running")),
        other => return err(format!("cannot kill container {id}: it is {other}")),
    }
    connect(&l)?.ask(json!({ "op": "signal", "container": id, "signal": signal }))?;
    Ok(())
}

fn ps(g: &Global, rest: &[String]) -> Res<()> {
    let (format, rest) = match rest {
        [f, v, tail @ ..] if f == "--format" || f == "-f" => (v.as_str(), tail),
        [f, tail @ ..] if f.starts_with("--format=") => (&f["--format=".len()..], tail),
        _ => ("table", rest),
    };
    let id = one_id(rest)?;
    let l = read_record(g, id)?;
    // The first hierarchy's members: every process joins all of them.
    let pids: Vec<i64> = l
        .rec
        .cgroup
        .as_ref()
        .and_then(|c| c.dirs.first())
        .and_then(|d| std::fs::read_to_string(Path::new(&d.dir).join("cgroup.procs")).ok())
        .map(|t| t.lines().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default();
    if format == "json" {
        println!("{}", json!(pids));
    } else {
        println!("PID");
        for p in pids {
            println!("{p}");
        }
    }
    Ok(())
}

/// Whether the bundle's spec has hooks of `kind`; None when its config.json cannot be read.
fn hooks(bundle: &str, kind: &str) -> Option<bool> {
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(Path::new(bundle).join("config.json")).ok()?).ok()?;
    Some(spec["hooks"][kind].as_array().is_some_and(|h| !h.is_empty()))
}

/// SIGKILL to every process in the container's cgroup.
fn kill_cgroup(l: &Loaded) {
    let Some(dir) = l.rec.cgroup.as_ref().and_then(|c| c.dirs.first()) else { return };
    let procs = std::fs::read_to_string(Path::new(&dir.dir).join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|p| p.parse::<i32>().ok()) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// `delete [--force] ID`, as the engine's delete (src/sandbox/engine.ts: teardown): the
/// container's processes killed, its sandbox told to forget it and exit, the socket, the
/// cgroup and the parents only it used removed, then its state directory. A container
/// that does not exist: nothing to do with --force, NotFound without. The engine's part:
/// poststop hooks, a paused or half-created container, a record it cannot read.
fn delete(g: &Global, rest: &[String]) -> Res<()> {
    let (force, id) = match rest {
        [f, id] if f == "--force" || f == "-f" => (true, id),
        [id] => (false, id),
        _ => return Err(Fail::Node),
    };
    let id = valid_id(id)?;
    if !Path::new(&g.root).join(id).exists() {
        return if force { Ok(()) } else { err(format!("container {id} does not exist")) };
    }
    let lock = lock(g, id)?;
    let l = read_record(g, id)?;
    // A spec that cannot be read has no hooks left to run, for the engine too.
    if hooks(&l.rec.bundle, "poststop").unwrap_or(false) {
        return Err(Fail::Node);
    }
    match current_status(&l)?.as_str() {
        "created" | "stopped" => {}
        "running" if force => {}
        "running" => return err(format!("cannot delete container {id}: it is running (use force)")),
        _ => return Err(Fail::Node),
    }
    let r = &l.rec;
    if same_process(r.sandbox_pid, r.sandbox_start_time.as_deref()) {
        let told = connect(&l).and_then(|mut c| {
            kill_cgroup(&l);
            let _ = c.ask(json!({ "op": "forget", "container": id }));
            c.shutdown()
        });
        if told.is_err() {
            // A sandbox that does not answer is killed, and its containers with it.
            unsafe { libc::kill(r.sandbox_pid as i32, libc::SIGKILL) };
        }
    }
    let _ = std::fs::remove_file(&r.socket);
    if let Some(cg) = &r.cgroup {
        kill_cgroup(&l);
        // What stays (another container's cgroup below) is left, as the engine leaves it.
        tsbox_sys::cgroup_teardown::remove_dirs(&cg.created);
        let leaves: Vec<String> = cg.dirs.iter().map(|d| d.dir.clone()).collect();
        tsbox_sys::cgroup_teardown::release_parents(&Path::new(&g.root).join(".cgroup-parents"), &leaves)
            .map_err(|e| Fail::Error(format!("release the parent cgroups of container {id}: {e}")))?;
    }
    drop(lock);
    std::fs::remove_dir_all(Path::new(&g.root).join(id)).map_err(|e| Fail::Error(format!("remove the state of container {id}: {e}")))
}

/// The OCI features document, written by `make build` from the tables the spec → plan
/// layer uses (the shim's `-info` answers with the same file).
fn features(rest: &[String]) -> Res<()> {
    if !rest.is_empty() {
        return Err(Fail::Node);
    }
    let text = std::fs::read_to_string(dist().join("features.json")).map_err(|_| Fail::Node)?;
    println!("{text}");
    Ok(())
}

/// `dist/` of the checkout or install this binary belongs to: <top>/build/bin/tsbox → <top>/dist.
fn dist() -> PathBuf {
    let exe = std::fs::canonicalize("/proc/self/exe").unwrap_or_default();
    exe.parent().and_then(Path::parent).and_then(Path::parent).map(|top| top.join("dist")).unwrap_or_default()
}

fn node_cli(args: &[String]) -> ExitCode {
    let node = std::env::var("TSBOX_NODE").unwrap_or_else(|_| "node".into());
    let entry = dist().join("bundle/tsbox.js");
    let e = Command::new(&node).arg(&entry).args(args).exec();
    eprintln!("tsbox: run {node} {}: {e}", entry.display());
    ExitCode::from(1)
}

/// runc writes errors to its --log too; the runc-v2 shim reads the last one from there.
fn log_error(g: &Global, msg: &str) {
    let Some(file) = &g.log else { return };
    let time = rfc3339(SystemTime::now());
    let line =
        if g.log_json { json!({ "level": "error", "msg": msg, "time": time }).to_string() } else { format!("time=\"{time}\" level=error msg={}", json!(msg)) };
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(file) {
        let _ = writeln!(f, "{line}"); // logging must never hide the real error
    }
}

/// UTC, to the millisecond, from the Unix time (days → civil date, Howard Hinnant's method).
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (secs, ms) = (d.as_secs() as i64, d.subsec_millis());
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn global_flags_in_runc_forms() {
        let a = strings(&["--root", "/r", "--log=/l", "--log-format", "json", "--systemd-cgroup", "state", "c1"]);
        let (g, cmd, rest) = parse_global(&a).expect("parsed");
        assert_eq!((g.root.as_str(), g.log.as_deref(), g.log_json, cmd, rest), ("/r", Some("/l"), true, "state", &a[7..]));
        // Unknown flags and a missing command go to the Node CLI, which words the refusal.
        assert!(parse_global(&strings(&["--bogus", "state", "c1"])).is_none());
        assert!(parse_global(&strings(&["--root", "/r"])).is_none());
    }

    #[test]
    fn ids_are_checked_as_the_engine_checks_them() {
        assert!(valid_id("a-b_c.d+1").is_ok());
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(matches!(valid_id(bad), Err(Fail::Node)), "{bad:?}");
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_795_000_000_123)), "2026-11-18T11:06:40.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }
}
