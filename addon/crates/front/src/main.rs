//! `containerd-shim-tsbox-v2`: containerd runs this binary for every container (`start`)
//! and after every removal (`delete`). Both are on the path of each container, so they
//! are native; everything else is the Node daemon (dist/bundle/shim.js), which this binary
//! spawns or execs.
//!
//!   start   find the group's daemon (reserving this container with it) or spawn one;
//!           write `<bundle>/address`; print the address (docs/protocol.md)
//!   delete  nothing left of the container: answer at once; otherwise hand over to the
//!           daemon code's full cleanup (docs/protocol.md)
//!
//! This binary alone reads containerd's command line and the config file: the daemon code
//! gets both, checked, as one JSON document in $TSBOX_SHIM (`launch`).

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

// --- protobuf: the few messages these commands read and write -----------------------

/// Declared with the field numbers of the .proto files in proto/ (ttrpc's Request and
/// Response, runtimeoptions.v1.Options, containerd's DeleteResponse) and of containerd's
/// types/introspection.proto (RuntimeInfo, not used by the daemon); prost does the wire.
mod wire {
    pub use prost::Message;
    pub use prost_types::{Any, Timestamp};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(string, tag = "1")]
        pub service: String,
        #[prost(string, tag = "2")]
        pub method: String,
        #[prost(bytes = "vec", tag = "3")]
        pub payload: Vec<u8>,
    }

    /// google.rpc.Status: set when the call was refused.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Status {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(string, tag = "2")]
        pub message: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        #[prost(message, optional, tag = "1")]
        pub status: Option<Status>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RuntimeOptions {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(string, tag = "2")]
        pub config_path: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DeleteResponse {
        #[prost(uint32, tag = "1")]
        pub pid: u32,
        #[prost(uint32, tag = "2")]
        pub exit_status: u32,
        #[prost(message, optional, tag = "3")]
        pub exited_at: Option<Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RuntimeVersion {
        #[prost(string, tag = "1")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RuntimeInfo {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub version: Option<RuntimeVersion>,
        #[prost(message, optional, tag = "3")]
        pub options: Option<Any>,
        #[prost(message, optional, tag = "4")]
        pub features: Option<Any>,
    }
}

use wire::Message;

/// config_path from the options Any on stdin (runtimeoptions.v1.Options), if any.
fn config_path_from_options(any: &[u8]) -> Option<String> {
    let any = wire::Any::decode(any).ok()?;
    if any.type_url != RUNTIME_OPTIONS {
        return None;
    }
    Some(wire::RuntimeOptions::decode(any.value.as_slice()).ok()?.config_path).filter(|p| !p.is_empty())
}

// --- configuration -------------------------------------------------------------------

/// The shim's settings (README: Configuration): defaults, overridden by the TOML file
/// named in the runtime options or $TSBOX_CONFIG.
#[derive(Debug, PartialEq)]
struct Config {
    root: String,
    grouping: String,
    log_level: String,
    idle_timeout: f64,
    /// The operator's policy module (src/shim/policy.ts); "" for none.
    policy: String,
}

impl Default for Config {
    fn default() -> Self {
        Config { root: DEFAULT_ROOT.into(), grouping: "namespace".into(), log_level: "info".into(), idle_timeout: 10.0, policy: String::new() }
    }
}

/// Reads and checks every setting: an unknown key or a bad value is refused, naming it.
fn load_config(path: Option<&str>) -> Result<Config, String> {
    let mut c = Config::default();
    let Some(path) = path else { return Ok(c) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("tsbox config {path}: {e}"))?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| format!("tsbox config {path}: {}", e.message()))?;
    for (k, v) in &doc {
        match (k.as_str(), v) {
            ("root", toml::Value::String(r)) if r.starts_with('/') => c.root = r.clone(),
            ("grouping", toml::Value::String(g)) if ["namespace", "pod", "container"].contains(&g.as_str()) => c.grouping = g.clone(),
            ("log_level", toml::Value::String(l)) if ["trace", "debug", "info", "warn", "error"].contains(&l.as_str()) => c.log_level = l.clone(),
            ("idle_timeout", toml::Value::Integer(n)) if *n >= 0 => c.idle_timeout = *n as f64,
            ("idle_timeout", toml::Value::Float(n)) if *n >= 0.0 && n.is_finite() => c.idle_timeout = *n,
            ("policy", toml::Value::String(p)) if p.starts_with('/') => c.policy = p.clone(),
            _ => return Err(format!("tsbox config {path}: invalid setting {k} = {}", serde_json::to_string(v).unwrap_or_default())),
        }
    }
    Ok(c)
}

/// $TSBOX_SHIM for the daemon code: the command line and the settings, checked here once.
fn launch(flags: &Flags, action: &str, socket: &Path, cfg: &Config) -> String {
    serde_json::json!({
        "action": action,
        "namespace": flags.namespace,
        "id": flags.id,
        "address": flags.address,
        "bundle": flags.bundle,
        "socket": socket.to_string_lossy(),
        "debug": flags.debug,
        "config": { "root": cfg.root, "grouping": cfg.grouping, "logLevel": cfg.log_level, "idleTimeout": cfg.idle_timeout, "policy": cfg.policy },
    })
    .to_string()
}

fn group_key(cfg: &Config, flags: &Flags, bundle: &Path) -> String {
    match cfg.grouping.as_str() {
        "container" => format!("container:{}", flags.id),
        "pod" => {
            // containerd's sandbox controller (sandboxer "shim") starts a pod's shim on a
            // bundle with no spec: that is the pod itself, which its containers name.
            if !bundle.join("config.json").exists() && bundle.exists() {
                return format!("pod:{}", flags.id);
            }
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
    // Containers under another policy get a daemon of their own: it is a daemon's setting.
    let hash = Sha256::digest(format!("{}\0{}\0{}\0{}", flags.address, flags.namespace, group, cfg.policy).as_bytes());
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
    let req = wire::Request { service: SHIM_SERVICE.into(), method: "Reserve".into(), payload: id.as_bytes().to_vec() }.encode_to_vec();
    // ttrpc's frame: length, stream id, type (1 request), flags (docs/protocol.md).
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
    // A Response carrying a status is a refusal.
    wire::Response::decode(body.as_slice()).is_ok_and(|r| r.status.is_none())
}

/// `dist/` of the checkout or install this binary belongs to.
fn dist() -> PathBuf {
    let exe = std::fs::canonicalize("/proc/self/exe").unwrap_or_default();
    // <top>/build/bin/containerd-shim-tsbox-v2 → <top>/dist
    exe.parent().and_then(Path::parent).and_then(Path::parent).map(|top| top.join("dist")).unwrap_or_default()
}

/// The daemon code, bundled into one file (Makefile: ts).
fn daemon_entry() -> PathBuf {
    dist().join("bundle/shim.js")
}

/// A small young generation (V8 otherwise grows it to tens of MB under a busy daemon's
/// allocation churn and keeps it), and gc() for the daemon's own collection of garbage
/// the old generation would otherwise hold until much later (see src/shim/daemon.ts).
/// V8's lite mode: no optimizing compilers, whose code pages and output cost the idle
/// daemon ~6 MB PSS; the daemon's work is small messages, and its CPU per container start
/// did not grow (scripts/bench). No WebAssembly (lite mode would warn about it).
const DAEMON_NODE_FLAGS: &[&str] = &["--max-semi-space-size=1", "--expose-gc", "--lite-mode", "--no-expose-wasm"];

const FEATURES_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// `-info` (containerd 2): a containerd.types.RuntimeInfo — name, version, the options
/// given on stdin, and the OCI features document (built by `make build` from the same
/// tables the spec → plan layer uses) as a JSON-valued Any, as runc-v2 answers.
fn runtime_info(options: &[u8], features: Vec<u8>) -> Result<Vec<u8>, String> {
    let info = wire::RuntimeInfo {
        name: "io.containerd.tsbox.v2".into(),
        version: Some(wire::RuntimeVersion { version: tsbox_sys::VERSION.into() }),
        options: if options.is_empty() { None } else { Some(wire::Any::decode(options).map_err(|e| format!("options on stdin: {e}"))?) },
        features: Some(wire::Any { type_url: FEATURES_TYPE_URL.into(), value: features }),
    };
    Ok(info.encode_to_vec())
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
fn spawn_daemon(flags: &Flags, socket: &Path, bundle: &Path, cfg: &Config) -> Result<(), String> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    let (rd, wr) = (fds[0], fds[1]);
    let mut cmd = Command::new(node());
    // The arguments only name the daemon in `ps`; it reads $TSBOX_SHIM.
    cmd.args(DAEMON_NODE_FLAGS)
        .arg(daemon_entry())
        .args(["-namespace", &flags.namespace, "-id", &flags.id, "-address", &flags.address])
        .arg("-socket")
        .arg(socket)
        .env("TSBOX_SHIM", launch(flags, "serve", socket, cfg))
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if flags.debug {
        cmd.arg("-debug");
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
    reserve_or_spawn(flags, &socket, &bundle, &cfg)?;
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
fn reserve_or_spawn(flags: &Flags, socket: &Path, bundle: &Path, cfg: &Config) -> Result<(), String> {
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
            return spawn_daemon(flags, socket, bundle, cfg);
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
    let exited_at = wire::Timestamp { seconds: now.as_secs() as i64, nanos: now.subsec_nanos() as i32 };
    // 128 + SIGKILL, as runc-v2 answers
    wire::DeleteResponse { pid: 0, exit_status: 137, exited_at: Some(exited_at) }.encode_to_vec()
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
    // pod/shm: a pod sandbox's /dev/shm (src/shim/sandbox-service.ts).
    !Path::new(&root).join(&flags.id).exists() && !mounted(&bundle.join("rootfs")) && !mounted(&bundle.join("pod/shm"))
}

/// `delete` with something left: the daemon code's cleanup, under the default settings
/// (the container's state root is in its bundle's tsbox.json).
fn exec_cleanup(flags: &Flags, args: &[String]) -> ExitCode {
    let json = launch(flags, "delete", Path::new(""), &Config::default());
    let err = Command::new(node()).arg(daemon_entry()).args(args).env("TSBOX_SHIM", json).exec();
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
        let path = dist().join("features.json");
        let info = std::fs::read(&path).map_err(|e| format!("read {}: {e}", path.display())).and_then(|f| runtime_info(&options, f));
        return match info {
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
        "delete" => exec_cleanup(&flags, &args),
        "" => {
            eprintln!("containerd-shim-tsbox-v2: no action given (start or delete): containerd runs start, which spawns the daemon");
            ExitCode::from(2)
        }
        other => {
            eprintln!("containerd-shim-tsbox-v2: unknown action {other}");
            ExitCode::from(2)
        }
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
        let opts = wire::RuntimeOptions { type_url: "io.containerd.tsbox.v1.Options".into(), config_path: "/etc/tsbox.toml".into() };
        let any = wire::Any { type_url: RUNTIME_OPTIONS.into(), value: opts.encode_to_vec() }.encode_to_vec();
        assert_eq!(config_path_from_options(&any).as_deref(), Some("/etc/tsbox.toml"));
        let other = wire::Any { type_url: "other.Options".into(), value: opts.encode_to_vec() }.encode_to_vec();
        assert_eq!(config_path_from_options(&other), None);
        assert_eq!(config_path_from_options(&[]), None);
    }

    #[test]
    fn groups_by_namespace_pod_or_container() {
        let dir = std::env::temp_dir().join(format!("tsbox-front-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("config.json"), r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#);
        let flags = Flags { id: "c1".into(), ..Default::default() };
        let cfg = |g: &str| Config { grouping: g.into(), ..Config::default() };
        assert_eq!(group_key(&cfg("namespace"), &flags, &dir), "namespace");
        assert_eq!(group_key(&cfg("pod"), &flags, &dir), "pod:pod1");
        assert_eq!(group_key(&cfg("container"), &flags, &dir), "container:c1");
        assert_eq!(group_key(&cfg("pod"), &flags, Path::new("/nonexistent")), "container:c1");
        let sandbox = dir.join("sandbox-bundle");
        let _ = std::fs::create_dir_all(&sandbox);
        assert_eq!(group_key(&cfg("pod"), &flags, &sandbox), "pod:c1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn config_is_read_as_toml() {
        let path = std::env::temp_dir().join(format!("tsbox-front-config-{}.toml", std::process::id()));
        let load = |text: &str| {
            let _ = std::fs::write(&path, text);
            load_config(path.to_str())
        };
        // Single quotes, comments, integers and floats: TOML.
        let full = Config { root: "/x".into(), grouping: "pod".into(), log_level: "debug".into(), idle_timeout: 1.0, policy: "/p.js".into() };
        assert_eq!(load("root = '/x' # here\ngrouping = \"pod\"\nlog_level = 'debug'\nidle_timeout = 1\npolicy = '/p.js'\n"), Ok(full));
        assert_eq!(load("idle_timeout = 0.5\n").map(|c| c.idle_timeout), Ok(0.5));
        let refused = |text: &str, what: &str| assert!(load(text).is_err_and(|e| e.contains(what)), "{text}");
        refused("root = 'relative'\n", "invalid setting root = \"relative\"");
        refused("grouping = \"galaxy\"\n", "invalid setting grouping = \"galaxy\"");
        refused("log_level = 'loud'\n", "invalid setting log_level");
        refused("idle_timeout = -1\n", "invalid setting idle_timeout = -1");
        refused("idle_timeout = inf\n", "invalid setting idle_timeout");
        refused("policy = 'p.js'\n", "invalid setting policy");
        refused("[other]\nroot = '/y'\n", "invalid setting other");
        refused("root = \n", "tsbox config ");
        let _ = std::fs::remove_file(&path);
        assert!(load_config(Some("/nonexistent/tsbox.toml")).is_err());
        assert_eq!(load_config(None), Ok(Config::default()));
    }

    #[test]
    fn launch_carries_flags_and_settings() {
        let a: Vec<String> = ["-namespace", "ns", "-id", "c1", "-address", "/a", "-bundle", "/b", "-debug", "delete"].iter().map(|s| s.to_string()).collect();
        let flags = parse_flags(&a).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&launch(&flags, "serve", Path::new("/s"), &Config::default())).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({"action": "serve", "namespace": "ns", "id": "c1", "address": "/a", "bundle": "/b", "socket": "/s", "debug": true,
                "config": {"root": DEFAULT_ROOT, "grouping": "namespace", "logLevel": "info", "idleTimeout": 10.0, "policy": ""}})
        );
    }

    #[test]
    fn delete_response_is_137_now() {
        let r = delete_response();
        // exit_status (field 2, varint) = 137 first: pid 0 is not written.
        assert_eq!(&r[..3], &[0x10, 0x89, 0x01]);
        let d = wire::DeleteResponse::decode(r.as_slice()).unwrap_or_default();
        let age = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64 - d.exited_at.map_or(0, |t| t.seconds);
        assert!((0..5).contains(&age));
    }

    #[test]
    fn runtime_info_carries_the_options_and_the_features() {
        let opts = wire::Any { type_url: RUNTIME_OPTIONS.into(), value: vec![] };
        let info = runtime_info(&opts.encode_to_vec(), b"{}".to_vec()).unwrap_or_default();
        let info = wire::RuntimeInfo::decode(info.as_slice()).unwrap_or_default();
        assert_eq!(info.name, "io.containerd.tsbox.v2");
        assert_eq!(info.options.map(|o| o.type_url).as_deref(), Some(RUNTIME_OPTIONS));
        assert_eq!(info.features.map(|f| f.type_url).as_deref(), Some(FEATURES_TYPE_URL));
        assert!(runtime_info(b"\xff", vec![]).is_err());
    }
}
