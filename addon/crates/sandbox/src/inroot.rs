//! Paths inside a container's root, resolved by the kernel and used through file
//! descriptors (docs/architecture.md: never a path string a container could swap under us).
//!
//! Every lookup is `openat2(root, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: a
//! symlink or `..` can never lead outside the root, and `/proc/self/fd/N`-style links are
//! refused. What was opened is checked (`fstat`) before anything is done to it, and the
//! operation then uses that fd, so a rename racing us changes nothing we act on.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use tsbox_sys::sys::cstring;
use tsbox_sys::{check, fd::own, Result, SysError};

pub const RESOLVE_NO_XDEV: u64 = 0x01;
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
pub const RESOLVE_BENEATH: u64 = 0x08;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2): `path` relative to `dir`, with the given open flags and RESOLVE_* bits.
pub fn openat2(dir: RawFd, path: &str, flags: libc::c_int, resolve: u64) -> Result<OwnedFd> {
    let c = cstring(path);
    let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode: 0, resolve };
    loop {
        let ret = unsafe { libc::syscall(libc::SYS_openat2, dir, c.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>()) };
        if ret >= 0 {
            return Ok(own(ret as RawFd));
        }
        let e = SysError::last(format!("open {path}"));
        // The kernel asks for a retry when a rename raced the lookup.
        if e.errno != libc::EAGAIN && e.errno != libc::EINTR {
            return Err(e);
        }
    }
}

pub fn fstat(fd: RawFd) -> Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd, &mut st) }, || "fstat".into())?;
    Ok(st)
}

pub fn fstatfs_type(fd: RawFd) -> Result<i64> {
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstatfs(fd, &mut st) }, || "fstatfs".into())?;
    Ok(st.f_type as i64)
}

pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// A directory all lookups are confined to: a rootfs before `pivot_root`, `/` after.
pub struct Root {
    fd: OwnedFd,
    /// How the root is named in errors: the path a user wrote, not /proc/self/fd/N.
    name: String,
}

/// The normal components of `path`, no `.` and no empty ones; `..` is kept for the kernel.
fn components(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".").collect()
}

impl Root {
    pub fn open(path: &str) -> Result<Root> {
        let c = cstring(path);
        let fd = check(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) }, || format!("open root {path}"))?;
        Ok(Root { fd: own(fd), name: path.to_string() })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Opens `path` (as the container names it) inside the root. `extra` adds RESOLVE_*
    /// bits, e.g. RESOLVE_NO_SYMLINKS where even an in-root symlink is not acceptable.
    pub fn resolve(&self, path: &str, flags: libc::c_int, extra: u64) -> Result<OwnedFd> {
        let rel = components(path).join("/");
        let rel = if rel.is_empty() { ".".to_string() } else { rel };
        openat2(self.raw(), &rel, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | extra)
            .map_err(|e| SysError::new(format!("open {path} in {}", self.name), e.errno))
    }

    /// Opens `path` as an O_PATH handle, checking that it is `S_IFDIR` or not, as wanted.
    pub fn resolve_path(&self, path: &str, want_dir: bool) -> Result<OwnedFd> {
        let fd = self.resolve(path, libc::O_PATH, 0)?;
        check_kind(&fd, path, want_dir)?;
        Ok(fd)
    }

    /// `mkdir -p` inside the root; returns an O_PATH handle of the directory. Each
    /// directory is created through a handle of its parent that the kernel resolved, so
    /// whatever the container swaps meanwhile, nothing is created outside the root. A
    /// dangling symlink on the way is followed (inside the root), as `mkdir -p` would.
    pub fn mkdir_all(&self, path: &str, mode: libc::mode_t) -> Result<OwnedFd> {
        let mut path = path.to_string();
        let mut hops = 0;
        'restart: loop {
            match self.resolve(&path, libc::O_PATH | libc::O_DIRECTORY, 0) {
                Err(e) if e.errno == libc::ENOENT => {}
                r => return r,
            }
            let comps = components(&path);
            let mut dir = self.resolve("/", libc::O_PATH | libc::O_DIRECTORY, 0)?;
            for i in 0..comps.len() {
                let prefix = comps[..=i].join("/");
                match self.resolve(&prefix, libc::O_PATH | libc::O_DIRECTORY, 0) {
                    Ok(fd) => {
                        dir = fd;
                        continue;
                    }
                    Err(e) if e.errno == libc::ENOENT => {}
                    Err(e) => return Err(e),
                }
                let name = cstring(comps[i]);
                if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) } != 0 && tsbox_sys::last_errno() != libc::EEXIST {
                    return Err(SysError::last(format!("mkdir /{prefix} in {}", self.name)));
                }
                // Re-resolve rather than trust the name: it may have been replaced.
                match self.resolve(&prefix, libc::O_PATH | libc::O_DIRECTORY, 0) {
                    Ok(fd) => dir = fd,
                    Err(e) if e.errno == libc::ENOENT => {
                        hops += 1;
                        if hops > 40 {
                            return Err(SysError::new(format!("mkdir {path} in {}: too many symlinks", self.name), libc::ELOOP));
                        }
                        let target = readlinkat(&dir, &name).map_err(|_| e)?;
                        let base = if target.starts_with('/') { String::new() } else { comps[..i].join("/") };
                        path = format!("{base}/{target}/{}", comps[i + 1..].join("/"));
                        continue 'restart;
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok(dir);
        }
    }

    /// The parent directory of `path` (created as needed) and the last component's name.
    pub fn parent_of(&self, path: &str) -> Result<(OwnedFd, CString)> {
        let comps = components(path);
        let Some((last, parent)) = comps.split_last() else {
            return Err(SysError::new(format!("{path} names the root itself"), libc::EINVAL));
        };
        if *last == ".." {
            return Err(SysError::new(format!("{path} ends in .."), libc::EINVAL));
        }
        Ok((self.mkdir_all(&parent.join("/"), 0o755)?, cstring(last)))
    }

    /// An O_PATH handle of the file at `path`, created empty if nothing is there (a bind
    /// mount target for a file). Refuses a directory.
    pub fn create_file(&self, path: &str) -> Result<OwnedFd> {
        let mut path = path.to_string();
        for _ in 0..40 {
            let (parent, name) = self.parent_of(&path)?;
            let fd = unsafe {
                libc::openat(parent.as_raw_fd(), name.as_ptr(), libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC, 0o644)
            };
            if fd >= 0 {
                drop(own(fd));
            } else if tsbox_sys::last_errno() != libc::EEXIST {
                return Err(SysError::last(format!("create {path} in {}", self.name)));
            }
            match self.resolve_path(&path, false) {
                // A dangling symlink: create what it names, inside the root.
                Err(e) if e.errno == libc::ENOENT => {
                    let target = readlinkat(&parent, &name).map_err(|_| e)?;
                    path = if target.starts_with('/') {
                        target
                    } else {
                        let comps = components(&path);
                        format!("{}/{target}", comps[..comps.len() - 1].join("/"))
                    };
                }
                r => return r,
            }
        }
        Err(SysError::new(format!("create {path} in {}: too many symlinks", self.name), libc::ELOOP))
    }
}

/// Fails unless `fd` is a directory (`want_dir`) or anything but one.
fn readlinkat(dir: &OwnedFd, name: &CString) -> Result<String> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    let n = check(unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len()) }, || "readlink".into())?;
    Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

pub fn check_kind(fd: &OwnedFd, path: &str, want_dir: bool) -> Result<()> {
    let st = fstat(fd.as_raw_fd())?;
    match (is_dir(&st), want_dir) {
        (true, false) => Err(SysError::new(format!("{path} is a directory, a file was expected"), libc::EISDIR)),
        (false, true) => Err(SysError::new(format!("{path} is not a directory"), libc::ENOTDIR)),
        _ => Ok(()),
    }
}

/// The path through which mount(2) reaches an fd. Only used while /proc is the host's
/// own procfs (before pivot_root), never through a container's /proc.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::{Path, PathBuf};

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn tmp(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!("tsbox-inroot-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(p.join("root")).unwrap();
        Tmp(p)
    }
    fn path_of(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd)).unwrap()
    }
    fn root(t: &Tmp) -> Root {
        Root::open(t.0.join("root").to_str().unwrap()).unwrap()
    }

    #[test]
    fn absolute_and_dotdot_symlinks_stay_in_the_root() {
        let t = tmp("links");
        std::fs::create_dir_all(t.0.join("root/etc")).unwrap();
        std::fs::write(t.0.join("outside"), "host").unwrap();
        symlink("/", t.0.join("root/abs")).unwrap();
        symlink("../../../..", t.0.join("root/up")).unwrap();
        let r = root(&t);
        assert_eq!(path_of(&r.resolve("/abs/etc", libc::O_PATH, 0).unwrap()), t.0.join("root/etc"));
        assert_eq!(path_of(&r.resolve("/up/etc", libc::O_PATH, 0).unwrap()), t.0.join("root/etc"));
        assert_eq!(path_of(&r.resolve("/../../etc", libc::O_PATH, 0).unwrap()), t.0.join("root/etc"));
        assert_eq!(r.resolve("/up/outside", libc::O_PATH, 0).unwrap_err().errno, libc::ENOENT);
    }

    #[test]
    fn mkdir_all_through_a_hostile_symlink_creates_inside_the_root() {
        let t = tmp("mkdir");
        symlink(t.0.join("escape").to_str().unwrap(), t.0.join("root/vol")).unwrap();
        let r = root(&t);
        let fd = r.mkdir_all("/vol/a/b", 0o755).unwrap();
        // The absolute host path in the link was read as a path inside the root.
        let inside = t.0.join("root").join(t.0.join("escape/a/b").strip_prefix("/").unwrap());
        assert_eq!(path_of(&fd), inside);
        assert!(!t.0.join("escape").exists());
    }

    #[test]
    fn mkdir_all_refuses_a_file_in_the_way_and_a_symlink_loop() {
        let t = tmp("file");
        std::fs::write(t.0.join("root/f"), "").unwrap();
        symlink("l2", t.0.join("root/l1")).unwrap();
        symlink("/l1", t.0.join("root/l2")).unwrap();
        let r = root(&t);
        assert_eq!(r.mkdir_all("/f/sub", 0o755).unwrap_err().errno, libc::ENOTDIR);
        assert_eq!(r.mkdir_all("/l1/sub", 0o755).unwrap_err().errno, libc::ELOOP);
    }

    #[test]
    fn mkdir_all_follows_a_relative_dangling_link_inside_the_root() {
        let t = tmp("rel");
        std::fs::create_dir(t.0.join("root/var")).unwrap();
        symlink("../run", t.0.join("root/var/run")).unwrap();
        let fd = root(&t).mkdir_all("/var/run/lock", 0o755).unwrap();
        assert_eq!(path_of(&fd), t.0.join("root/run/lock"));
    }

    #[test]
    fn create_file_makes_an_empty_file_and_keeps_an_existing_one() {
        let t = tmp("create");
        let r = root(&t);
        let fd = r.create_file("/etc/resolv.conf").unwrap();
        assert_eq!(path_of(&fd), t.0.join("root/etc/resolv.conf"));
        std::fs::write(t.0.join("root/etc/resolv.conf"), "x").unwrap();
        r.create_file("/etc/resolv.conf").unwrap();
        assert_eq!(std::fs::read_to_string(t.0.join("root/etc/resolv.conf")).unwrap(), "x");
        assert_eq!(r.create_file("/etc").unwrap_err().errno, libc::EISDIR);
    }

    #[test]
    fn a_symlinked_file_target_resolves_in_the_root() {
        let t = tmp("filelink");
        std::fs::write(t.0.join("hostfile"), "host").unwrap();
        symlink(t.0.join("hostfile").to_str().unwrap(), t.0.join("root/target")).unwrap();
        let r = root(&t);
        // The link's target does not exist inside the root: created there, host untouched.
        let fd = r.create_file("/target").unwrap();
        assert!(path_of(&fd).starts_with(t.0.join("root")));
        assert_eq!(std::fs::read_to_string(t.0.join("hostfile")).unwrap(), "host");
    }

    #[test]
    fn magic_links_and_no_symlinks_are_refused() {
        let r = Root::open("/").unwrap();
        assert_eq!(r.resolve("/proc/self/root/etc", libc::O_PATH, 0).unwrap_err().errno, libc::ELOOP);
        let t = tmp("nosym");
        symlink("real", t.0.join("root/l")).unwrap();
        std::fs::create_dir(t.0.join("root/real")).unwrap();
        assert_eq!(root(&t).resolve("/l", libc::O_PATH, RESOLVE_NO_SYMLINKS).unwrap_err().errno, libc::ELOOP);
        assert!(Path::new(&path_of(&root(&t).resolve("/l", libc::O_PATH, 0).unwrap())).ends_with("root/real"));
    }

    #[test]
    fn parent_of_refuses_the_root_and_dotdot() {
        let t = tmp("parent");
        let r = root(&t);
        assert_eq!(r.parent_of("/").unwrap_err().errno, libc::EINVAL);
        assert_eq!(r.parent_of("/a/..").unwrap_err().errno, libc::EINVAL);
        let (dir, name) = r.parent_of("/x/y/z").unwrap();
        assert_eq!(path_of(&dir), t.0.join("root/x/y"));
        assert_eq!(name.to_str().unwrap(), "z");
    }
}
