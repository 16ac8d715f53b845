//! Device access on cgroup v2: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) built from
//! the container's device rules and attached to its cgroup. cgroup v2 has no devices
//! files; without a program any device node a container can mknod is usable.
//!
//! Rules read like v1's devices.allow/deny list: the last rule that matches a request
//! decides, nothing matching means deny. An allow rule matches when every access asked
//! for is one it grants; a deny rule when it names any of them.

use crate::{check, fd::own, Result, SysError};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'a' (any), 'b' or 'c'.
    pub kind: char,
    /// None is any ('*').
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// Bits of ACC_MKNOD | ACC_READ | ACC_WRITE.
    pub access: u32,
}

pub const ACC_MKNOD: u32 = 1;
pub const ACC_READ: u32 = 2;
pub const ACC_WRITE: u32 = 4;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// "rwm" → access bits.
pub fn access_bits(s: &str) -> Result<u32> {
    s.chars().try_fold(0, |acc, c| match c {
        'r' => Ok(acc | ACC_READ),
        'w' => Ok(acc | ACC_WRITE),
        'm' => Ok(acc | ACC_MKNOD),
        _ => Err(SysError::new(format!("device access \"{s}\": unknown letter '{c}'"), libc::EINVAL)),
    })
}

/// One eBPF instruction, as the kernel lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

/// The program for `rules`. Registers: r1 the context (struct bpf_cgroup_dev_ctx:
/// access_type = access << 16 | type, major, minor), r2 type, r3 access, r4 major,
/// r5 minor, r6 scratch; r0 is the answer (1 allow, 0 deny).
pub fn program(rules: &[DeviceRule]) -> Result<Vec<Insn>> {
    let mut p = vec![
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV_X, 3, 2, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    // The last rule decides: test them from the end, first match returns.
    for r in rules.iter().rev() {
        let mut checks: Vec<Insn> = Vec::new();
        match r.kind {
            'a' => {}
            'b' => checks.push(insn(JNE_K, 2, 0, 0, DEV_BLOCK)),
            'c' => checks.push(insn(JNE_K, 2, 0, 0, DEV_CHAR)),
            k => return Err(SysError::new(format!("device type '{k}' is not a, b or c"), libc::EINVAL)),
        }
        let all = ACC_MKNOD | ACC_READ | ACC_WRITE;
        if r.allow && r.access & all != all {
            // Anything asked for beyond what the rule grants: not this rule.
            checks.push(insn(MOV_X, 6, 3, 0, 0));
            checks.push(insn(AND_K, 6, 0, 0, (!r.access & all) as i32));
            checks.push(insn(JNE_K, 6, 0, 0, 0));
        } else if !r.allow && r.access & all != all {
            // None of what it denies is asked for: not this rule.
            checks.push(insn(MOV_X, 6, 3, 0, 0));
            checks.push(insn(AND_K, 6, 0, 0, r.access as i32));
            checks.push(insn(JEQ_K, 6, 0, 0, 0));
        }
        if let Some(m) = r.major {
            checks.push(insn(JNE_K, 4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            checks.push(insn(JNE_K, 5, 0, 0, m as i32));
        }
        // Each failed check jumps past the rest of this rule and its two-instruction verdict.
        let n = checks.len();
        for (i, c) in checks.iter_mut().enumerate().filter(|(_, c)| c.code == JNE_K || c.code == JEQ_K) {
            c.off = (n - i - 1 + 2) as i16;
        }
        p.extend(checks);
        p.push(insn(MOV_K, 0, 0, 0, r.allow as i32));
        p.push(insn(EXIT, 0, 0, 0, 0));
        if n == 0 {
            // Matches everything: the earlier rules can never decide (and the verifier
            // refuses code that cannot be reached).
            return Ok(p);
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    Ok(p)
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// bpf(2) with a zeroed attribute block whose leading u32/u64 fields the caller fills.
fn bpf(cmd: libc::c_long, attr: &mut [u64; 16], what: &str) -> Result<libc::c_long> {
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), std::mem::size_of::<[u64; 16]>()) };
    check(ret, || what.to_string())
}

fn pack(lo: u32, hi: u32) -> u64 {
    lo as u64 | ((hi as u64) << 32)
}

/// Loads the program into the kernel.
pub fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut attr = [0u64; 16];
    attr[0] = pack(BPF_PROG_TYPE_CGROUP_DEVICE, insns.len() as u32);
    attr[1] = insns.as_ptr() as u64;
    attr[2] = license.as_ptr() as u64;
    if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr, "load the device filter (bpf BPF_PROG_LOAD)") {
        return Ok(own(fd as RawFd));
    }
    // Refused: load again with the verifier's log, which says why.
    let mut log = vec![0u8; 1 << 20];
    attr[3] = pack(1, log.len() as u32);
    attr[4] = log.as_mut_ptr() as u64;
    bpf(BPF_PROG_LOAD, &mut attr, "load the device filter (bpf BPF_PROG_LOAD)").map(|fd| own(fd as RawFd)).map_err(|e| {
        // The verifier says why in its log; keep its last line for the error.
        let text = String::from_utf8_lossy(&log[..log.iter().position(|&b| b == 0).unwrap_or(0)]).into_owned();
        let why = text.lines().rfind(|l| !l.trim().is_empty() && !l.starts_with("processed ")).unwrap_or("").to_string();
        if why.is_empty() {
            e
        } else {
            SysError::new(format!("{}: {why}", e.step), e.errno)
        }
    })
}

/// Ids of the device programs attached to the cgroup itself.
fn attached(cgroup: &OwnedFd) -> Result<Vec<u32>> {
    let mut ids = [0u32; 64];
    let mut attr = [0u64; 16];
    attr[0] = pack(cgroup.as_raw_fd() as u32, BPF_CGROUP_DEVICE);
    attr[2] = ids.as_mut_ptr() as u64;
    attr[3] = ids.len() as u64;
    bpf(BPF_PROG_QUERY, &mut attr, "list the cgroup's device filters (bpf BPF_PROG_QUERY)")?;
    let count = (attr[3] & 0xffff_ffff) as usize;
    Ok(ids[..count.min(ids.len())].to_vec())
}

/// Makes `rules` the cgroup's device filter: the new program is attached first, then the
/// ones it replaces are detached, so there is no moment without a filter.
pub fn set_filter(cgroup_dir: &str, rules: &[DeviceRule]) -> Result<()> {
    let prog = load(&program(rules)?)?;
    let c = crate::sys::cstring(cgroup_dir);
    let cgroup = own(check(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) }, || format!("open {cgroup_dir}"))?);
    let old = attached(&cgroup)?;
    let mut attr = [0u64; 16];
    attr[0] = pack(cgroup.as_raw_fd() as u32, prog.as_raw_fd() as u32);
    attr[1] = pack(BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &mut attr, &format!("attach the device filter to {cgroup_dir} (bpf BPF_PROG_ATTACH)"))?;
    for id in old {
        let mut get = [0u64; 16];
        get[0] = id as u64;
        let Ok(fd) = bpf(BPF_PROG_GET_FD_BY_ID, &mut get, "open the old device filter") else { continue };
        let old_prog = own(fd as RawFd);
        let mut detach = [0u64; 16];
        detach[0] = pack(cgroup.as_raw_fd() as u32, old_prog.as_raw_fd() as u32);
        detach[1] = BPF_CGROUP_DEVICE as u64;
        bpf(BPF_PROG_DETACH, &mut detach, &format!("detach the old device filter from {cgroup_dir}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The program run by a tiny interpreter of the instructions it uses, so the rules'
    /// meaning is tested without root; the kernel test below runs the same program for real.
    fn run(p: &[Insn], kind: i32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | kind as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = ctx[i.off as usize / 4] as u64,
                MOV_X => r[dst] = r[src],
                MOV_K => r[dst] = i.imm as u64,
                AND_K => r[dst] &= i.imm as u32 as u64,
                RSH_K => r[dst] >>= i.imm,
                JNE_K if r[dst] != i.imm as u32 as u64 => pc += i.off as usize,
                JEQ_K if r[dst] == i.imm as u32 as u64 => pc += i.off as usize,
                JNE_K | JEQ_K => {}
                EXIT => return r[0],
                c => panic!("opcode {c:#x}"),
            }
        }
    }

    fn rule(allow: bool, kind: char, major: Option<u32>, minor: Option<u32>, access: &str) -> DeviceRule {
        DeviceRule { allow, kind, major, minor, access: access_bits(access).unwrap() }
    }

    #[test]
    fn default_rules_allow_null_and_deny_kmsg_and_disks() {
        let rules = vec![rule(false, 'a', None, None, "rwm"), rule(true, 'c', None, None, "m"), rule(true, 'c', Some(1), Some(3), "rwm")];
        let p = program(&rules).unwrap();
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 1, 11), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 1, 11), 1);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_MKNOD, 8, 0), 0);
    }

    #[test]
    fn the_last_matching_rule_decides_and_partial_access_is_respected() {
        let rules = vec![rule(true, 'a', None, None, "rwm"), rule(false, 'c', Some(1), Some(11), "w"), rule(true, 'b', Some(8), None, "r")];
        let p = program(&rules).unwrap();
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 11), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 11), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 1), 1);
        // Write on a disk: the "b 8:* r" rule does not grant it, the allow-all does.
        assert_eq!(run(&p, DEV_BLOCK, ACC_WRITE, 8, 1), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_WRITE, 5, 0), 1);
    }

    #[test]
    fn rules_hidden_by_a_later_catch_all_are_left_out() {
        let rules = vec![rule(true, 'c', Some(1), Some(3), "rwm"), rule(false, 'a', None, None, "rwm")];
        let p = program(&rules).unwrap();
        assert_eq!(p.len(), 6 + 2);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 0);
    }

    #[test]
    fn no_rules_deny_everything() {
        assert_eq!(run(&program(&[]).unwrap(), DEV_CHAR, ACC_READ, 1, 3), 0);
        assert!(access_bits("rwx").is_err());
    }

    /// The cgroup2 mount of this host (the unified hierarchy on a hybrid one).
    fn cgroup2() -> String {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info.lines().find(|l| l.contains(" - cgroup2 ")).expect("a cgroup2 mount (the unified hierarchy)");
        line.split(' ').nth(4).unwrap().to_string()
    }

    fn try_read(cgroup: &str, node: &std::path::Path) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        let procs = crate::sys::cstring(&format!("{cgroup}/cgroup.procs"));
        let mut cmd = std::process::Command::new("head");
        cmd.args(["-c", "1"]).arg(node);
        // SAFETY: only open/write/close between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"0".as_ptr() as *const libc::c_void, 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(fd);
                Ok(())
            });
        }
        cmd.output().unwrap()
    }

    #[test]
    fn the_kernel_enforces_the_filter_and_a_new_one_replaces_it() {
        let dir = std::env::temp_dir().join(format!("tsbox-devfilter-{}", std::process::id()));
        let cgroup = format!("{}/tsbox-devfilter-test-{}", cgroup2(), std::process::id());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir(&cgroup).unwrap();
        let (null, zero) = (dir.join("null"), dir.join("zero"));
        for (p, minor) in [(&null, 3), (&zero, 5)] {
            let c = crate::sys::cstring(p.to_str().unwrap());
            assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, minor)) }, 0);
        }
        set_filter(&cgroup, &[rule(true, 'c', Some(1), Some(3), "rwm")]).unwrap();
        let allowed = try_read(&cgroup, &null);
        let denied = try_read(&cgroup, &zero);
        set_filter(&cgroup, &[rule(true, 'c', Some(1), Some(5), "r")]).unwrap();
        let after_update = (try_read(&cgroup, &zero), try_read(&cgroup, &null));
        let _ = std::fs::remove_dir(&cgroup);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(allowed.status.success(), "{allowed:?}");
        assert!(!denied.status.success() && String::from_utf8_lossy(&denied.stderr).contains("Operation not permitted"), "{denied:?}");
        assert!(after_update.0.status.success(), "{:?}", after_update.0);
        assert!(!after_update.1.status.success(), "{:?}", after_update.1);
    }
}
