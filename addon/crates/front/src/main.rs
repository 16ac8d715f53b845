//! `containerd-shim-tsbox-v2`: containerd runs this binary for every container (`start`)
//! and after every removal (`delete`). Both are on the path of each container, so they
//! are native; everything else is the Node daemon (dist/shim/main.js), which this binary
//! spawns or execs.
//!
//!   start   find the group's daemon (reserving this container with it) or spawn one;
//!           write `<bundle>/address`; print the address (docs/protocol.md)
//!   delete  nothing left of the container: answer at once; otherwise hand over to the
//!           daemon code's full cleanup (docs/protocol.md)
//!   (none)  serve: exec the daemon

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DEFAULT_ROOT: &str = "/run/tsbox/containerd";
const SHIM_SERVICE: &str = "tsbox.shim.v1.Shim";
const RUNTIME_OPTIONS: &str = "runtimeoptions.v1.Options";

#[derive(Default)]
struct Flags {
    namespace: String,
    id: String,
    address: String,
    bundle: String,
    debug: bool,
    version: bool,
    info: bool,
    action: String,
}

fn parse_flags(args: &[String]) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if !a.starts_with('-') || a == "-" || a == "--" {
            f.action = if a == "--" { args.get(i + 1).cloned().unwrap_or_default() } else { a.clone() };
            break;
        }
        let body = a.trim_start_matches('-');
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let mut value = || -> String {
            inline.clone().unwrap_or_else(|| {
                i += 1;
                args.get(i).cloned().unwrap_or_default()
            })
        };
        match name {
            "namespace" => f.namespace = value(),
            "id" => f.id = value(),
            "address" => f.address = value(),
            "bundle" => f.bundle = value(),
            "publish-binary" | "socket" | "debug-socket" => {
                value();
            }
            "debug" => f.debug = inline.as_deref() != Some("false"),
            "v" | "version" => f.version = true,
            "info" => f.info = true,
            other => return Err(format!("flag provided but not defined: -{other}")),
        }
        i += 1;
    }
    Ok(f)
}

// --- protobuf, the little of it these commands need ---------------------------------

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Length-delimited fields of a message, by number (other wire types skipped).
fn fields(buf: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let Some(tag) = varint(buf, &mut pos) else { break };
        match tag & 7 {
            0 => {
                if varint(buf, &mut pos).is_none() {
                    break;
                }
            }
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let Some(len) = varint(buf, &mut pos) else { break };
                let end = pos + len as usize;
                if end > buf.len() {
                    break;
                }
                out.push((tag >> 3, &buf[pos..end]));
                pos = end;
            }
            _ => break,
        }
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    put_varint(out, field << 3 | 2);
    put_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// config_path from the options Any on stdin (runtimeoptions.v1.Options), if any.
fn config_path_from_options(any: &[u8]) -> Option<String> {
    let f = fields(any);
    let type_url = f.iter().find(|(n, _)| *n == 1).map(|(_, v)| String::from_utf8_lossy(v).into_owned())?;
    if type_url != RUNTIME_OPTIONS {
        return None;
    }
    let value = f.iter().find(|(n, _)| *n == 2).map(|(_, v)| *v)?;
    fields(value).into_iter().find(|(n, _)| *n == 2).map(|(_, v)| String::from_utf8_lossy(v).into_owned()).filter(|p| !p.is_empty())
}

// --- configuration -------------------------------------------------------------------

struct Config {
    root: String,
    grouping: String,
}

/// The keys `start` needs, read the way the daemon reads them (a real TOML parser, the
/// same rules for root and grouping): both must find the same socket. Anything else in
/// the file is the daemon's to check.
fn load_config(path: Option<&str>) -> Result<Config, String> {
    let mut c = Config { root: DEFAULT_ROOT.into(), grouping: "namespace".into() };
    let Some(path) = path else { return Ok(c) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("tsbox config {path}: {e}"))?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("tsbox config {path}: {}", e.message()))?;
    // The daemon's wording: the value as JSON.
    let invalid = |k: &str, v: &toml::Value| format!("tsbox config {path}: invalid setting {k} = {}", serde_json::to_string(v).unwrap_or_default());
    for (k, v) in &doc {
        match (k.as_str(), v.as_str()) {
            ("root", Some(r)) if r.starts_with('/') => c.root = r.into(),
            ("grouping", Some(g)) if ["namespace", "pod", "container"].contains(&g) => c.grouping = g.into(),
            ("root" | "grouping", _) => return Err(invalid(k, v)),
            _ => {}
        }
    }
    Ok(c)
}

fn group_key(cfg: &Config, flags: &Flags, bundle: &Path) -> String {
    match cfg.grouping.as_str() {
        "container" => format!("container:{}", flags.id),
        "pod" => {
            let spec: serde_json::Value = std::fs::read(bundle.join("config.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
            let ann = &spec["annotations"];
            match ann["io.containerd.runc.v2.group"].as_str().or(ann["io.kubernetes.cri.sandbox-id"].as_str()) {
                Some(pod) => format!("pod:{pod}"),
                None => format!("container:{}", flags.id),
            }
        }
        _ => "namespace".into(),
    }
}

fn daemon_socket(cfg: &Config, flags: &Flags, group: &str) -> PathBuf {
    let hash = Sha256::digest(format!("{}\0{}\0{}", flags.address, flags.namespace, group).as_bytes());
    let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    Path::new(&cfg.root).join("s").join(hex)
}

// --- talking to the daemon -----------------------------------------------------------

/// Reserve(id) with the group's daemon: true when a live daemon took the reservation.
fn reserve(socket: &Path, id: &str) -> bool {
    let Ok(fd) = tsbox_sys::fd::unix_connect(&socket.to_string_lossy()) else { return false };
    // SAFETY: fd is a fresh connected socket we own.
    let mut s = unsafe { std::os::unix::net::UnixStream::from_raw_fd(tsbox_sys::fd::leak(fd)) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut req = Vec::new();
    put_bytes(&mut req, 1, SHIM_SERVICE.as_bytes());
    put_bytes(&mut req, 2, b"Reserve");
    put_bytes(&mut req, 3, id.as_bytes());
    let mut frame = Vec::with_capacity(10 + req.len());
    frame.extend_from_slice(&(req.len() as u32).to_be_bytes());
    frame.extend_from_slice(&1u32.to_be_bytes());
    frame.extend_from_slice(&[1, 0]);
    frame.extend_from_slice(&req);
    if s.write_all(&frame).is_err() {
        return false;
    }
    let mut header = [0u8; 10];
    if s.read_exact(&mut header).is_err() || header[8] != 2 {
        return false;
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut body = vec![0u8; len];
    if s.read_exact(&mut body).is_err() {
        return false;
    }
    // A Response carrying a status (field 1) is a refusal.
    !fields(&body).iter().any(|(n, _)| *n == 1)
}

/// `dist/` of the checkout or install this binary belongs to.
fn dist() -> PathBuf {
    let exe = std::fs::canonicalize("/proc/self/exe").unwrap_or_default();
    // <top>/build/bin/containerd-shim-tsbox-v2 → <top>/dist
    exe.parent().and_then(Path::parent).and_then(Path::parent).map(|top| top.join("dist")).unwrap_or_default()
}

/// dist/shim/main.js: the daemon.
fn daemon_entry() -> PathBuf {
    dist().join("shim/main.js")
}

/// A small young generation (V8 otherwise grows it to tens of MB under a busy daemon's
/// allocation churn and keeps it), and gc() for the daemon's own collection of garbage
/// the old generation would otherwise hold until much later (see src/shim/daemon.ts).
const DAEMON_NODE_FLAGS: &[&str] = &["--max-semi-space-size=1", "--expose-gc"];

const FEATURES_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// `-info` (containerd 2): a containerd.types.RuntimeInfo — name, version, the options
/// given on stdin, and the OCI features document (built by `make build` from the same
/// tables the spec → plan layer uses) as a JSON-valued Any, as runc-v2 answers.
fn runtime_info(options: &[u8]) -> Result<Vec<u8>, String> {
    let path = dist().join("features.json");
    let features = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut version = Vec::new();
    put_bytes(&mut version, 1, tsbox_sys::VERSION.as_bytes());
    let mut any = Vec::new();
    put_bytes(&mut any, 1, FEATURES_TYPE_URL.as_bytes());
    put_bytes(&mut any, 2, &features);
    let mut out = Vec::new();
    put_bytes(&mut out, 1, b"io.containerd.tsbox.v2");
    put_bytes(&mut out, 2, &version);
    if !options.is_empty() {
        put_bytes(&mut out, 3, options);
    }
    put_bytes(&mut out, 4, &any);
    Ok(out)
}

fn node() -> String {
    std::env::var("TSBOX_NODE").unwrap_or_else(|_| "node".into())
}

/// containerd's oom_score_adj plus one (at most 1000), as the text to write.
fn oom_score_above_containerd() -> Result<String, String> {
    let path = format!("/proc/{}/oom_score_adj", unsafe { libc::getppid() });
    let text = std::fs::read_to_string(&path).map_err(|e| format!("read {path}: {e}"))?;
    let score: i32 = text.trim().parse().map_err(|_| format!("{path}: not a number: {}", text.trim()))?;
    Ok((score + 1).min(1000).to_string())
}

/// Spawns the daemon detached (own session, stdio on /dev/null) and waits for its
/// "ready" line on fd 3.
fn spawn_daemon(flags: &Flags, socket: &Path, bundle: &Path, config: Option<&str>) -> Result<(), String> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    let (rd, wr) = (fds[0], fds[1]);
    let mut cmd = Command::new(node());
    cmd.args(DAEMON_NODE_FLAGS)
        .arg(daemon_entry())
        .args(["-namespace", &flags.namespace, "-id", &flags.id, "-address", &flags.address])
        .arg("-socket")
        .arg(socket)
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if flags.debug {
        cmd.arg("-debug");
    }
    if let Some(c) = config {
        cmd.env("TSBOX_CONFIG", c);
    }
    // Like runc-v2's shim: one point above containerd's OOM score, so the kernel picks the
    // daemon (and the containers, which inherit it) before containerd.
    let score = oom_score_above_containerd()?;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            if libc::dup2(wr, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, score.as_ptr() as *const libc::c_void, score.len()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| format!("run {} {}: {e}", node(), daemon_entry().display()));
    unsafe { libc::close(wr) };
    let mut child = child?;
    // SAFETY: rd is our pipe end.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(rd as RawFd) };
    let mut out = String::new();
    let _ = pipe.read_to_string(&mut out);
    if out.starts_with("ready\n") {
        return Ok(());
    }
    let _ = child.try_wait();
    Err(format!("daemon did not start: {}", if out.trim().is_empty() { "it exited without a word" } else { out.trim() }))
}

fn start(flags: &Flags) -> Result<String, String> {
    let bundle = if flags.bundle.is_empty() { std::env::current_dir().map_err(|e| e.to_string())? } else { PathBuf::from(&flags.bundle) };
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let config = config_path_from_options(&stdin).or_else(|| std::env::var("TSBOX_CONFIG").ok().filter(|p| !p.is_empty()));
    let cfg = load_config(config.as_deref())?;
    let socket = daemon_socket(&cfg, flags, &group_key(&cfg, flags, &bundle));
    let dir = socket.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    let lock_path = format!("{}.lock", socket.display());
    let lock = std::fs::OpenOptions::new().create(true).append(true).open(&lock_path).map_err(|e| format!("open {lock_path}: {e}"))?;
    // One start at a time per group decides whether a daemon must be spawned.
    while unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        if tsbox_sys::last_errno() != libc::EINTR {
            return Err(format!("flock {lock_path}: {}", std::io::Error::last_os_error()));
        }
    }
    reserve_or_spawn(flags, &socket, &bundle, config.as_deref())?;
    drop(lock);
    let address = format!("unix://{}", socket.display());
    let tmp = bundle.join(format!("address.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &address).and_then(|_| std::fs::rename(&tmp, bundle.join("address"))).map_err(|e| format!("write address: {e}"))?;
    Ok(address)
}

/// How long `start` waits for a live daemon of the group that does not answer.
const STALLED_DAEMON_WAIT: Duration = Duration::from_secs(60);

/// Under the group's start lock: reserve the container with the group's daemon, or spawn
/// one when none lives. A daemon holds `<socket>.life` locked for its whole life, so one
/// that is alive but slow (stopped, swapping, exiting) is waited for, never replaced: a
/// second daemon on its socket would lose containers when the first one resumes.
fn reserve_or_spawn(flags: &Flags, socket: &Path, bundle: &Path, config: Option<&str>) -> Result<(), String> {
    let life_path = format!("{}.life", socket.display());
    let deadline = SystemTime::now() + STALLED_DAEMON_WAIT;
    loop {
        if reserve(socket, &flags.id) {
            return Ok(());
        }
        let life = std::fs::OpenOptions::new().create(true).append(true).open(&life_path).map_err(|e| format!("open {life_path}: {e}"))?;
        if unsafe { libc::flock(life.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            // Nobody holds it: no daemon lives; whatever socket is there is stale.
            drop(life);
            let _ = std::fs::remove_file(socket);
            return spawn_daemon(flags, socket, bundle, config);
        }
        if SystemTime::now() >= deadline {
            let pid = std::fs::read_to_string(&life_path).unwrap_or_default();
            return Err(format!(
                "the shim daemon of this group (pid {}) is alive but has not answered for {} s; not starting a second one",
                pid.trim(),
                STALLED_DAEMON_WAIT.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True while anything is mounted on `path`.
fn mounted(path: &Path) -> bool {
    let p = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo").map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(&p))).unwrap_or(true)
}

fn delete_response() -> Vec<u8> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut ts = Vec::new();
    put_varint(&mut ts, 1 << 3);
    put_varint(&mut ts, now.as_secs());
    put_varint(&mut ts, 2 << 3);
    put_varint(&mut ts, u64::from(now.subsec_nanos()));
    let mut out = Vec::new();
    put_varint(&mut out, 2 << 3); // exit_status: 128 + SIGKILL, as runc-v2 answers
    put_varint(&mut out, 137);
    put_bytes(&mut out, 3, &ts);
    out
}

/// Fast path of `delete`: nothing of the container is left (the normal case, after a
/// Delete RPC). Returns false when the daemon code must clean up.
fn nothing_left(flags: &Flags) -> bool {
    let bundle = if flags.bundle.is_empty() { std::env::current_dir().unwrap_or_default() } else { PathBuf::from(&flags.bundle) };
    let root = std::fs::read(bundle.join("tsbox.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["root"].as_str().map(String::from))
        .unwrap_or_else(|| format!("{DEFAULT_ROOT}/{}", flags.namespace));
    !Path::new(&root).join(&flags.id).exists() && !mounted(&bundle.join("rootfs"))
}

fn exec_daemon_code(args: &[String]) -> ExitCode {
    let err = Command::new(node()).arg(daemon_entry()).args(args).exec();
    eprintln!("containerd-shim-tsbox-v2: run {}: {err}", node());
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = match parse_flags(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if flags.version {
        println!("containerd-shim-tsbox-v2:\n  Version: {}", tsbox_sys::VERSION);
        return ExitCode::SUCCESS;
    }
    if flags.info {
        let mut options = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut options);
        return match runtime_info(&options) {
            Ok(info) => {
                let _ = std::io::stdout().write_all(&info);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("containerd-shim-tsbox-v2 -info: {e}");
                ExitCode::from(1)
            }
        };
    }
    if flags.namespace.is_empty() {
        eprintln!("shim namespace cannot be empty");
        return ExitCode::from(1);
    }
    match flags.action.as_str() {
        "start" => match start(&flags) {
            Ok(address) => {
                print!("{address}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                // containerd shows start's combined output as the error.
                print!("tsbox start: {e}");
                ExitCode::from(1)
            }
        },
        "delete" if nothing_left(&flags) => {
            let _ = std::io::stdout().write_all(&delete_response());
            ExitCode::SUCCESS
        }
        _ => exec_daemon_code(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_in_every_form() {
        let a: Vec<String> =
            ["-namespace", "k8s.io", "--id=x", "-address", "/a", "-publish-binary", "/b", "-debug", "start"].iter().map(|s| s.to_string()).collect();
        let f = parse_flags(&a).unwrap_or_default();
        assert_eq!((f.namespace.as_str(), f.id.as_str(), f.address.as_str(), f.debug, f.action.as_str()), ("k8s.io", "x", "/a", true, "start"));
        assert!(parse_flags(&["-nope".to_string()]).is_err());
    }

    #[test]
    fn options_any_gives_the_config_path() {
        let mut opts = Vec::new();
        put_bytes(&mut opts, 1, b"io.containerd.tsbox.v1.Options");
        put_bytes(&mut opts, 2, b"/etc/tsbox.toml");
        let mut any = Vec::new();
        put_bytes(&mut any, 1, RUNTIME_OPTIONS.as_bytes());
        put_bytes(&mut any, 2, &opts);
        assert_eq!(config_path_from_options(&any).as_deref(), Some("/etc/tsbox.toml"));
        assert_eq!(config_path_from_options(&[]), None);
    }

    #[test]
    fn groups_by_namespace_pod_or_container() {
        let dir = std::env::temp_dir().join(format!("tsbox-front-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("config.json"), r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#);
        let flags = Flags { id: "c1".into(), ..Default::default() };
        let cfg = |g: &str| Config { root: DEFAULT_ROOT.into(), grouping: g.into() };
        assert_eq!(group_key(&cfg("namespace"), &flags, &dir), "namespace");
        assert_eq!(group_key(&cfg("pod"), &flags, &dir), "pod:pod1");
        assert_eq!(group_key(&cfg("container"), &flags, &dir), "container:c1");
        assert_eq!(group_key(&cfg("pod"), &flags, Path::new("/nonexistent")), "container:c1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn config_is_read_as_toml() {
        let path = std::env::temp_dir().join(format!("tsbox-front-config-{}.toml", std::process::id()));
        let load = |text: &str| {
            let _ = std::fs::write(&path, text);
            load_config(path.to_str()).map(|c| (c.root, c.grouping))
        };
        // Single quotes, comments and other tables: TOML, as the daemon reads it.
        assert_eq!(load("root = '/x' # here\ngrouping = \"pod\"\nidle_timeout = 1\n"), Ok(("/x".into(), "pod".into())));
        assert_eq!(load("[other]\nroot = '/y'\n"), Ok((DEFAULT_ROOT.into(), "namespace".into())));
        assert!(load("root = 'relative'\n").is_err_and(|e| e.contains("invalid setting root")));
        assert!(load("root = \n").is_err_and(|e| e.starts_with("tsbox config ")));
        let _ = std::fs::remove_file(&path);
        assert!(load_config(Some("/nonexistent/tsbox.toml")).is_err());
        assert_eq!(load_config(None).map(|c| c.root), Ok(DEFAULT_ROOT.to_string()));
    }

    #[test]
    fn delete_response_is_137_now() {
        let r = delete_response();
        assert_eq!(&r[..3], &[0x10, 0x89, 0x01]);
        assert_eq!(fields(&r).len(), 1);
    }
}
