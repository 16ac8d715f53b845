/** Kernel constants the plan is expressed in (x86_64/aarch64 Linux UAPI values). */

export const CLONE = {
  NEWNS: 0x00020000,
  NEWCGROUP: 0x02000000,
  NEWUTS: 0x04000000,
  NEWIPC: 0x08000000,
  NEWUSER: 0x10000000,
  NEWPID: 0x20000000,
  NEWNET: 0x40000000,
} as const;

/** OCI namespace type → clone flag. "time" is not supported. */
export const NAMESPACE_FLAGS: Record<string, number> = {
  pid: CLONE.NEWPID,
  network: CLONE.NEWNET,
  mount: CLONE.NEWNS,
  ipc: CLONE.NEWIPC,
  uts: CLONE.NEWUTS,
  user: CLONE.NEWUSER,
  cgroup: CLONE.NEWCGROUP,
};

export const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  SYNCHRONOUS: 16,
  REMOUNT: 32,
  MANDLOCK: 64,
  DIRSYNC: 128,
  NOSYMFOLLOW: 256,
  NOATIME: 1024,
  NODIRATIME: 2048,
  BIND: 4096,
  MOVE: 8192,
  REC: 16384,
  UNBINDABLE: 1 << 17,
  PRIVATE: 1 << 18,
  SLAVE: 1 << 19,
  SHARED: 1 << 20,
  RELATIME: 1 << 21,
  STRICTATIME: 1 << 24,
} as const;

/** Mount options that set (or with `clear`, unset) a flag, as runc reads them. */
export const MOUNT_FLAG_OPTIONS: Record<string, { flag: number; clear?: boolean }> = {
  ro: { flag: MS.RDONLY },
  rw: { flag: MS.RDONLY, clear: true },
  nosuid: { flag: MS.NOSUID },
  suid: { flag: MS.NOSUID, clear: true },
  nodev: { flag: MS.NODEV },
  dev: { flag: MS.NODEV, clear: true },
  noexec: { flag: MS.NOEXEC },
  exec: { flag: MS.NOEXEC, clear: true },
  sync: { flag: MS.SYNCHRONOUS },
  async: { flag: MS.SYNCHRONOUS, clear: true },
  dirsync: { flag: MS.DIRSYNC },
  remount: { flag: MS.REMOUNT },
  mand: { flag: MS.MANDLOCK },
  nomand: { flag: MS.MANDLOCK, clear: true },
  noatime: { flag: MS.NOATIME },
  atime: { flag: MS.NOATIME, clear: true },
  nodiratime: { flag: MS.NODIRATIME },
  diratime: { flag: MS.NODIRATIME, clear: true },
  relatime: { flag: MS.RELATIME },
  norelatime: { flag: MS.RELATIME, clear: true },
  strictatime: { flag: MS.STRICTATIME },
  nostrictatime: { flag: MS.STRICTATIME, clear: true },
  nosymfollow: { flag: MS.NOSYMFOLLOW },
  symfollow: { flag: MS.NOSYMFOLLOW, clear: true },
  bind: { flag: MS.BIND },
  rbind: { flag: MS.BIND | MS.REC },
};

/** Options applied to a mount and every mount below it (mount_setattr AT_RECURSIVE). */
export const RECURSIVE_MOUNT_OPTIONS: Record<string, { flag: number; clear?: boolean }> = {
  rro: { flag: MS.RDONLY },
  rrw: { flag: MS.RDONLY, clear: true },
  rnosuid: { flag: MS.NOSUID },
  rsuid: { flag: MS.NOSUID, clear: true },
  rnodev: { flag: MS.NODEV },
  rdev: { flag: MS.NODEV, clear: true },
  rnoexec: { flag: MS.NOEXEC },
  rexec: { flag: MS.NOEXEC, clear: true },
  rnodiratime: { flag: MS.NODIRATIME },
  rdiratime: { flag: MS.NODIRATIME, clear: true },
};

export const PROPAGATION_OPTIONS: Record<string, number> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

export const CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

export const RLIMITS: Record<string, number> = {
  RLIMIT_CPU: 0,
  RLIMIT_FSIZE: 1,
  RLIMIT_DATA: 2,
  RLIMIT_STACK: 3,
  RLIMIT_CORE: 4,
  RLIMIT_RSS: 5,
  RLIMIT_NPROC: 6,
  RLIMIT_NOFILE: 7,
  RLIMIT_MEMLOCK: 8,
  RLIMIT_AS: 9,
  RLIMIT_LOCKS: 10,
  RLIMIT_SIGPENDING: 11,
  RLIMIT_MSGQUEUE: 12,
  RLIMIT_NICE: 13,
  RLIMIT_RTPRIO: 14,
  RLIMIT_RTTIME: 15,
};

export const S_IF = { CHR: 0o020000, BLK: 0o060000, FIFO: 0o010000 } as const;

export const SIGNALS: Record<string, number> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  ILL: 4,
  TRAP: 5,
  ABRT: 6,
  IOT: 6,
  BUS: 7,
  FPE: 8,
  KILL: 9,
  USR1: 10,
  SEGV: 11,
  USR2: 12,
  PIPE: 13,
  ALRM: 14,
  TERM: 15,
  STKFLT: 16,
  CHLD: 17,
  CONT: 18,
  STOP: 19,
  TSTP: 20,
  TTIN: 21,
  TTOU: 22,
  URG: 23,
  XCPU: 24,
  XFSZ: 25,
  VTALRM: 26,
  PROF: 27,
  WINCH: 28,
  IO: 29,
  POLL: 29,
  PWR: 30,
  SYS: 31,
};

/** "TERM", "SIGTERM", "15" → 15; undefined when unknown. */
export function parseSignal(s: string): number | undefined {
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    return n > 0 && n <= 64 ? n : undefined;
  }
  const name = s.toUpperCase().replace(/^SIG/, '');
  const rt = /^RTMIN(?:\+(\d+))?$/.exec(name);
  if (rt) return 34 + Number(rt[1] ?? 0);
  return SIGNALS[name];
}
