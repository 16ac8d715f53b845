/**
 * spec → plan: everything tsbox decides about a container before any syscall, as pure
 * functions (no I/O, no root), so the decisions are unit-tested by asserting the plan.
 * tsbox-sandbox executes the plan literally (addon/crates/sandbox/src/plan.rs mirrors
 * these types field for field).
 *
 * Every refusal is a PlanError naming the spec field, e.g.
 *   mounts[3].options[1]: unknown propagation "rsharedd"
 */
import * as path from 'node:path';
import type { Hook, IdMapping, Mount, Process, Seccomp, Spec, State } from './spec';
import { CAPABILITIES, CLONE, MS, MOUNT_FLAG_OPTIONS, NAMESPACE_FLAGS, PROPAGATION_OPTIONS, RECURSIVE_MOUNT_OPTIONS, RLIMITS, S_IF } from './linux';

export class PlanError extends Error {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
    this.name = 'PlanError';
  }
}

export interface IdMappingPlan {
  containerId: number;
  hostId: number;
  size: number;
}

export interface MountPlan {
  source: string;
  destination: string;
  fstype: string;
  flags: number;
  data: string;
  propagation: number;
  bind: boolean;
  remount: boolean;
  /** mount_setattr(AT_RECURSIVE) attributes to set and clear (rro, rnosuid, …). */
  recursiveSet: number;
  recursiveClear: number;
  field: string;
}

export interface DevicePlan {
  path: string;
  fileType: number;
  major: number;
  minor: number;
  mode: number;
  uid: number;
  gid: number;
  field: string;
}

export interface HookPlan {
  path: string;
  args: string[];
  env: string[];
  timeout: number | null;
  field: string;
}

export interface RlimitPlan {
  resource: number;
  soft: number | null;
  hard: number | null;
  field: string;
}

export interface CapabilitiesPlan {
  bounding: number;
  effective: number;
  inheritable: number;
  permitted: number;
  ambient: number;
}

export interface SeccompActionPlan {
  kind: 'kill_process' | 'kill_thread' | 'trap' | 'errno' | 'trace' | 'allow' | 'log';
  value: number | null;
}

export interface SeccompPlan {
  defaultAction: SeccompActionPlan;
  architectures: string[];
  rules: {
    names: string[];
    action: SeccompActionPlan;
    args: { index: number; value: number; valueTwo: number; op: string }[];
    field: string;
  }[];
}

export interface ProcessPlan {
  args: string[];
  env: string[];
  cwd: string;
  uid: number;
  gid: number;
  additionalGids: number[];
  umask: number | null;
  rlimits: RlimitPlan[];
  capabilities: CapabilitiesPlan | null;
  noNewPrivileges: boolean;
  terminal: boolean;
  /** [rows, columns] of the terminal at start. */
  consoleSize: [number, number] | null;
  seccomp: SeccompPlan | null;
  /** AppArmor profile applied at execve. */
  apparmorProfile: string | null;
}

export interface ContainerPlan {
  rootfs: string;
  rootfsReadonly: boolean;
  rootfsPropagation: number;
  cloneFlags: number;
  /** A new cgroup namespace is entered only after the init joined its cgroup. */
  unshareCgroupNs: boolean;
  joinNamespaces: { flag: number; path: string; field: string }[];
  uidMappings: IdMappingPlan[];
  gidMappings: IdMappingPlan[];
  hostname: string | null;
  domainname: string | null;
  mounts: MountPlan[];
  devices: DevicePlan[];
  bindDevices: boolean;
  symlinks: { target: string; link: string }[];
  maskedPaths: string[];
  readonlyPaths: string[];
  sysctls: { key: string; value: string }[];
  oomScoreAdj: number | null;
  cgroupProcs: string[];
  /** [cgroup version, memory cgroup directory] to watch for OOM kills. */
  oomWatch: [number, string] | null;
  pauseForHooks: boolean;
  /** Seconds for any one setup step; null: tsbox-sandbox's default. */
  setupDeadline: number | null;
  hooks: { createContainer: HookPlan[]; startContainer: HookPlan[] };
  hookState: State;
  process: ProcessPlan;
  /** A pod sandbox's init: it holds the namespaces and reaps, and runs no program. */
  pause: boolean;
}

export interface ExecPlan {
  cgroupProcs: string[];
  process: ProcessPlan;
}

/** One cgroup hierarchy as the container should see it under a `cgroup` mount. */
export interface CgroupView {
  /** Directory name under the mount point: "memory", "cpu", "systemd", "" for v2. */
  name: string;
  /** The container's cgroup directory on the host. */
  hostDir: string;
}

export interface PlanContext {
  id: string;
  /** Absolute bundle directory. */
  bundle: string;
  /** `cgroup.procs` files the init must join. */
  cgroupProcs: string[];
  /** What a `cgroup` mount shows; empty means the host's hierarchy is not exposed. */
  cgroupViews: CgroupView[];
  cgroupVersion: 1 | 2;
  /** The container's memory cgroup directory, when there is one to watch. */
  memoryCgroup?: string;
  /** Seconds allowed for any one setup step (see EngineOptions.setupDeadline). */
  setupDeadline?: number;
  /** The host kernel has /proc/kcore (then /dev/core links to it, as with runc). */
  hostHasKcore?: boolean;
  /** A pod sandbox (src/oci/pod.ts): the init pauses instead of running process.args. */
  pause?: boolean;
}

function isAbs(p: string): boolean {
  return p.startsWith('/');
}

function cleanPath(p: string): string {
  return path.posix.normalize(p).replace(/\/+$/, '') || '/';
}

/** The id mappings, checked. */
function idMappings(maps: IdMapping[] | undefined, field: string): IdMappingPlan[] {
  return (maps ?? []).map((m, i) => {
    for (const k of ['containerID', 'hostID', 'size'] as const) {
      if (!Number.isInteger(m[k]) || m[k] < 0) throw new PlanError(`${field}[${i}].${k}`, `must be a non-negative integer`);
    }
    return { containerId: m.containerID, hostId: m.hostID, size: m.size };
  });
}

/** Capability names → bit mask. Bits go past 31, so the sum of distinct powers of two
 * stands in for JavaScript's 32-bit `|`. */
function capMask(names: string[] | undefined, field: string): number {
  const bits = new Set<number>();
  (names ?? []).forEach((name, i) => {
    const upper = name.toUpperCase();
    const bit = CAPABILITIES.indexOf(upper.startsWith('CAP_') ? upper : `CAP_${upper}`);
    if (bit < 0) throw new PlanError(`${field}[${i}]`, `unknown capability "${name}"`);
    bits.add(bit);
  });
  let mask = 0;
  for (const bit of bits) mask += 2 ** bit;
  return mask;
}

/** Decodes a capability mask back to names (for `tsbox state`-style output and tests). */
export function capNames(mask: number): string[] {
  return CAPABILITIES.filter((_, bit) => Math.floor(mask / 2 ** bit) % 2 === 1);
}

export const SECCOMP_ACTIONS: Record<string, SeccompActionPlan['kind']> = {
  SCMP_ACT_KILL: 'kill_thread',
  SCMP_ACT_KILL_THREAD: 'kill_thread',
  SCMP_ACT_KILL_PROCESS: 'kill_process',
  SCMP_ACT_TRAP: 'trap',
  SCMP_ACT_ERRNO: 'errno',
  SCMP_ACT_TRACE: 'trace',
  SCMP_ACT_ALLOW: 'allow',
  SCMP_ACT_LOG: 'log',
};

export const SECCOMP_OPS: Record<string, string> = {
  SCMP_CMP_NE: 'ne',
  SCMP_CMP_LT: 'lt',
  SCMP_CMP_LE: 'le',
  SCMP_CMP_EQ: 'eq',
  SCMP_CMP_GE: 'ge',
  SCMP_CMP_GT: 'gt',
  SCMP_CMP_MASKED_EQ: 'masked_eq',
};

export const SECCOMP_FLAGS = new Set(['SECCOMP_FILTER_FLAG_TSYNC', 'SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW']);

function seccompAction(name: string, errnoRet: number | undefined, field: string): SeccompActionPlan {
  const kind = SECCOMP_ACTIONS[name];
  if (!kind) {
    const hint = name === 'SCMP_ACT_NOTIFY' ? ' (seccomp user notification is not supported)' : '';
    throw new PlanError(field, `invalid seccomp action "${name}"${hint}`);
  }
  if (kind === 'errno') return { kind, value: errnoRet ?? 1 };
  if (kind === 'trace') return { kind, value: errnoRet ?? 1 };
  return { kind, value: null };
}

export function planSeccomp(s: Seccomp): SeccompPlan {
  (s.flags ?? []).forEach((f, i) => {
    if (!SECCOMP_FLAGS.has(f)) throw new PlanError(`linux.seccomp.flags[${i}]`, `unknown seccomp flag "${f}"`);
  });
  if (s.listenerPath) throw new PlanError('linux.seccomp.listenerPath', 'seccomp user notification is not supported');
  return {
    defaultAction: seccompAction(s.defaultAction, s.defaultErrnoRet, 'linux.seccomp.defaultAction'),
    architectures: s.architectures ?? [],
    rules: (s.syscalls ?? []).map((sc, i) => {
      const field = `linux.seccomp.syscalls[${i}]`;
      if (!Array.isArray(sc.names) || sc.names.length === 0) throw new PlanError(`${field}.names`, 'needs at least one syscall name');
      return {
        names: sc.names,
        action: seccompAction(sc.action, sc.errnoRet, `${field}.action`),
        args: (sc.args ?? []).map((a, j) => {
          const op = SECCOMP_OPS[a.op];
          if (!op) throw new PlanError(`${field}.args[${j}].op`, `invalid seccomp operator "${a.op}"`);
          if (!Number.isInteger(a.index) || a.index < 0 || a.index > 5) throw new PlanError(`${field}.args[${j}].index`, 'must be 0..5');
          return { index: a.index, value: a.value, valueTwo: a.valueTwo ?? 0, op };
        }),
        field,
      };
    }),
  };
}

/** Process settings shared by a container's init and its execs. */
/**
 * Refuses a string with a NUL byte anywhere under `value`: the kernel would read it cut
 * short, so `a\u0000b` would silently become `a`. `field` names the first one found.
 */
function refuseNul(value: unknown, field: string): void {
  if (typeof value === 'string') {
    if (value.includes('\0')) throw new PlanError(field, 'contains a NUL byte');
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => refuseNul(v, `${field}[${i}]`));
  } else if (value && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      if (k.includes('\0')) throw new PlanError(field || 'config.json', 'has a key containing a NUL byte');
      refuseNul(v, field ? `${field}.${k}` : k);
    }
  }
}

export function planProcess(p: Process | undefined, seccomp: Seccomp | undefined, field = 'process'): ProcessPlan {
  refuseNul(p, field);
  if (!p) throw new PlanError(field, 'is required');
  if (!p.args || p.args.length === 0) throw new PlanError(`${field}.args`, 'needs at least one element');
  if (typeof p.cwd !== 'string' || !isAbs(p.cwd)) throw new PlanError(`${field}.cwd`, `must be an absolute path, got "${p.cwd}"`);
  if (!p.user || !Number.isInteger(p.user.uid) || !Number.isInteger(p.user.gid)) {
    throw new PlanError(`${field}.user`, 'uid and gid are required integers');
  }
  // Not applying a label that was asked for would look like confinement and be none.
  if (p.selinuxLabel) throw new PlanError(`${field}.selinuxLabel`, 'SELinux labels are not applied by tsbox');
  const seen = new Set<string>();
  const rlimits = (p.rlimits ?? []).map((r, i) => {
    const resource = RLIMITS[r.type];
    if (resource === undefined) throw new PlanError(`${field}.rlimits[${i}].type`, `unknown rlimit "${r.type}"`);
    if (seen.has(r.type)) throw new PlanError(`${field}.rlimits[${i}].type`, `duplicate rlimit "${r.type}"`);
    seen.add(r.type);
    // JSON cannot carry 2^64-1 exactly: anything at or past 2^63 means unlimited.
    const lim = (v: number) => (v >= 2 ** 63 || v < 0 ? null : v);
    return { resource, soft: lim(r.soft), hard: lim(r.hard), field: `${field}.rlimits[${i}]` };
  });
  const c = p.capabilities;
  return {
    args: p.args,
    env: p.env ?? [],
    cwd: p.cwd,
    uid: p.user.uid,
    gid: p.user.gid,
    additionalGids: p.user.additionalGids ?? [],
    umask: p.user.umask ?? null,
    rlimits,
    capabilities: c
      ? {
          bounding: capMask(c.bounding, `${field}.capabilities.bounding`),
          effective: capMask(c.effective, `${field}.capabilities.effective`),
          inheritable: capMask(c.inheritable, `${field}.capabilities.inheritable`),
          permitted: capMask(c.permitted, `${field}.capabilities.permitted`),
          ambient: capMask(c.ambient, `${field}.capabilities.ambient`),
        }
      : null,
    noNewPrivileges: p.noNewPrivileges ?? false,
    terminal: p.terminal ?? false,
    consoleSize: p.terminal && p.consoleSize ? [p.consoleSize.height, p.consoleSize.width] : null,
    seccomp: seccomp ? planSeccomp(seccomp) : null,
    apparmorProfile: p.apparmorProfile || null,
  };
}

/** Splits mount options into flags, propagation and filesystem data, as runc does. */
export function parseMountOptions(options: string[]): {
  flags: number;
  propagation: number;
  recursiveSet: number;
  recursiveClear: number;
  data: string[];
  dataIndex: number[];
} {
  let flags = 0;
  let propagation = 0;
  let recursiveSet = 0;
  let recursiveClear = 0;
  const data: string[] = [];
  const dataIndex: number[] = [];
  options.forEach((opt, i) => {
    const f = MOUNT_FLAG_OPTIONS[opt];
    if (f) {
      flags = f.clear ? flags & ~f.flag : flags | f.flag;
      return;
    }
    const r = RECURSIVE_MOUNT_OPTIONS[opt];
    if (r) {
      if (r.clear) {
        recursiveClear |= r.flag;
        recursiveSet &= ~r.flag;
      } else {
        recursiveSet |= r.flag;
        recursiveClear &= ~r.flag;
      }
      return;
    }
    const p = PROPAGATION_OPTIONS[opt];
    if (p !== undefined) {
      propagation = p;
      return;
    }
    if (opt === 'defaults' || opt === '') return;
    data.push(opt);
    dataIndex.push(i);
  });
  return { flags, propagation, recursiveSet, recursiveClear, data, dataIndex };
}

/** SELinux relabel requests: meaningless without SELinux, accepted and ignored like runc. */
export const IGNORED_BIND_OPTIONS = new Set(['z', 'Z']);

const BIND_REMOUNT_FLAGS = ~(MS.BIND | MS.REC | MS.REMOUNT);

/**
 * Files under /proc a mount may cover (runc's list: lxcfs-style views of the host's
 * figures). Anything else there could redirect what the runtime or the container writes
 * to the kernel, e.g. a sysctl.
 */
const PROC_MOUNTABLE = new Set([
  '/proc/cpuinfo',
  '/proc/diskstats',
  '/proc/meminfo',
  '/proc/stat',
  '/proc/swaps',
  '/proc/uptime',
  '/proc/loadavg',
  '/proc/slabinfo',
  '/proc/sys/kernel/ns_last_pid',
  '/proc/sys/crypto/fips_enabled',
]);

function checkProcMount(destination: string, type: string, bind: boolean, field: string): void {
  if (destination === '/proc') {
    if (bind || type !== 'proc') throw new PlanError(field, 'only a proc filesystem can be mounted at /proc');
  } else if (destination.startsWith('/proc/') && !PROC_MOUNTABLE.has(destination)) {
    throw new PlanError(field, `${destination} is inside /proc, where only ${[...PROC_MOUNTABLE].join(', ')} may be mounted`);
  }
}

function planMount(m: Mount, i: number, bundle: string, ctx: PlanContext): MountPlan[] {
  const field = `mounts[${i}]`;
  const label = `${field} (${m.destination})`;
  if (typeof m.destination !== 'string' || !isAbs(m.destination)) {
    throw new PlanError(`${field}.destination`, `must be an absolute path, got "${m.destination}"`);
  }
  const destination = cleanPath(m.destination);
  const { flags, propagation, recursiveSet, recursiveClear, data, dataIndex } = parseMountOptions(m.options ?? []);
  const recursive = { recursiveSet, recursiveClear };
  const type = m.type ?? '';
  const bind = type === 'bind' || (flags & MS.BIND) !== 0;
  checkProcMount(destination, type, bind, `${field}.destination`);
  if (bind) {
    if (!m.source) throw new PlanError(`${field}.source`, 'a bind mount needs a source');
    // A bind mount takes no filesystem data. `key=value` options (mode=755, size=…) are
    // ignored, as the kernel and runc ignore them; a bare unknown word is a typo of a flag.
    const unknown = data.findIndex((d) => !IGNORED_BIND_OPTIONS.has(d) && !d.includes('='));
    if (unknown >= 0) throw new PlanError(`${field}.options[${dataIndex[unknown]}]`, `unknown option "${data[unknown]}" for a bind mount`);
    const source = isAbs(m.source) ? m.source : path.join(bundle, m.source);
    return [
      {
        source,
        destination,
        fstype: '',
        flags: flags | MS.BIND,
        data: '',
        propagation,
        bind: true,
        remount: (flags & BIND_REMOUNT_FLAGS) !== 0,
        ...recursive,
        field: label,
      },
    ];
  }
  if (type === 'cgroup' || type === 'cgroup2') return planCgroupMount(destination, flags, propagation, label, ctx);
  if (!type) throw new PlanError(`${field}.type`, 'is required for a non-bind mount');
  return [
    { source: m.source ?? type, destination, fstype: type, flags, data: data.join(','), propagation, bind: false, remount: false, ...recursive, field: label },
  ];
}

const NOT_RECURSIVE = { recursiveSet: 0, recursiveClear: 0 };

/**
 * A `cgroup` mount shows the container its own cgroups. v1: a tmpfs with each hierarchy's
 * container directory bound below it (runc's layout); v2: the container's directory.
 */
function planCgroupMount(destination: string, flags: number, propagation: number, field: string, ctx: PlanContext): MountPlan[] {
  const bindFlags = (flags & (MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC)) | MS.BIND;
  if (ctx.cgroupVersion === 2) {
    const view = ctx.cgroupViews[0];
    if (!view) return [];
    return [
      { source: view.hostDir, destination, fstype: '', flags: bindFlags | MS.REC, data: '', propagation, bind: true, remount: true, ...NOT_RECURSIVE, field },
    ];
  }
  const out: MountPlan[] = [
    {
      source: 'tmpfs',
      destination,
      fstype: 'tmpfs',
      flags: MS.NOSUID | MS.NODEV | MS.NOEXEC,
      data: 'mode=755',
      propagation,
      bind: false,
      remount: false,
      ...NOT_RECURSIVE,
      field,
    },
  ];
  for (const v of ctx.cgroupViews) {
    out.push({
      source: v.hostDir,
      destination: path.posix.join(destination, v.name),
      fstype: '',
      flags: bindFlags,
      data: '',
      propagation: 0,
      bind: true,
      remount: (bindFlags & BIND_REMOUNT_FLAGS) !== 0,
      ...NOT_RECURSIVE,
      field,
    });
  }
  return out;
}

const DEFAULT_DEVICES: readonly { path: string; major: number; minor: number }[] = [
  { path: '/dev/null', major: 1, minor: 3 },
  { path: '/dev/zero', major: 1, minor: 5 },
  { path: '/dev/full', major: 1, minor: 7 },
  { path: '/dev/random', major: 1, minor: 8 },
  { path: '/dev/urandom', major: 1, minor: 9 },
  { path: '/dev/tty', major: 5, minor: 0 },
];

function planDevices(spec: Spec): DevicePlan[] {
  const out = new Map<string, DevicePlan>();
  for (const d of DEFAULT_DEVICES) {
    out.set(d.path, { ...d, fileType: S_IF.CHR, mode: 0o666, uid: 0, gid: 0, field: `default device ${d.path}` });
  }
  (spec.linux?.devices ?? []).forEach((d, i) => {
    const field = `linux.devices[${i}]`;
    if (!d.path || !isAbs(d.path)) throw new PlanError(`${field}.path`, `must be an absolute path, got "${d.path}"`);
    const fileType = d.type === 'c' || d.type === 'u' ? S_IF.CHR : d.type === 'b' ? S_IF.BLK : d.type === 'p' ? S_IF.FIFO : 0;
    if (!fileType) throw new PlanError(`${field}.type`, `unknown device type "${d.type}"`);
    if (fileType !== S_IF.FIFO && (!Number.isInteger(d.major) || !Number.isInteger(d.minor))) {
      throw new PlanError(field, 'major and minor are required for c, u and b devices');
    }
    out.set(cleanPath(d.path), {
      path: cleanPath(d.path),
      fileType,
      major: d.major ?? 0,
      minor: d.minor ?? 0,
      mode: d.fileMode ?? 0o666,
      uid: d.uid ?? 0,
      gid: d.gid ?? 0,
      field: `${field} (${d.path})`,
    });
  });
  return [...out.values()];
}

function planHooks(hooks: Hook[] | undefined, kind: string): HookPlan[] {
  return (hooks ?? []).map((h, i) => {
    const field = `hooks.${kind}[${i}]`;
    if (!h.path || !isAbs(h.path)) throw new PlanError(`${field}.path`, `must be an absolute path, got "${h.path}"`);
    if (h.timeout !== undefined && (!Number.isInteger(h.timeout) || h.timeout <= 0)) {
      throw new PlanError(`${field}.timeout`, 'must be a positive number of seconds');
    }
    return { path: h.path, args: h.args ?? [], env: h.env ?? [], timeout: h.timeout ?? null, field };
  });
}

export function validateHooks(spec: Spec): void {
  for (const kind of ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'] as const) {
    planHooks(spec.hooks?.[kind], kind);
  }
}

export function planContainer(spec: Spec, ctx: PlanContext): ContainerPlan {
  if (!spec || typeof spec !== 'object') throw new PlanError('config.json', 'is not a JSON object');
  if (typeof spec.ociVersion !== 'string') throw new PlanError('ociVersion', 'is required');
  // The process is checked by planProcess below; the rest of the spec here, once.
  refuseNul({ ...spec, process: undefined }, '');
  if (!spec.root?.path) throw new PlanError('root.path', 'is required');
  const rootfs = isAbs(spec.root.path) ? spec.root.path : path.join(ctx.bundle, spec.root.path);
  const linux = spec.linux ?? {};

  let cloneFlags = 0;
  let unshareCgroupNs = false;
  const joins: ContainerPlan['joinNamespaces'] = [];
  const seen = new Set<string>();
  (linux.namespaces ?? []).forEach((ns, i) => {
    const field = `linux.namespaces[${i}]`;
    const flag = NAMESPACE_FLAGS[ns.type];
    if (flag === undefined) throw new PlanError(`${field}.type`, `unknown namespace type "${ns.type}"`);
    if (seen.has(ns.type)) throw new PlanError(`${field}.type`, `namespace "${ns.type}" is listed twice`);
    seen.add(ns.type);
    if (ns.path) {
      if (!isAbs(ns.path)) throw new PlanError(`${field}.path`, `must be an absolute path, got "${ns.path}"`);
      joins.push({ flag, path: ns.path, field: `${field} (${ns.type})` });
    } else if (flag === CLONE.NEWCGROUP) {
      unshareCgroupNs = true;
    } else {
      cloneFlags |= flag;
    }
  });
  if (!seen.has('mount')) throw new PlanError('linux.namespaces', 'a mount namespace is required');
  // User namespace first: it decides what we may do in the others.
  joins.sort((a, b) => Number(b.flag === CLONE.NEWUSER) - Number(a.flag === CLONE.NEWUSER));

  if (linux.mountLabel) throw new PlanError('linux.mountLabel', 'SELinux labels are not applied by tsbox');
  const newUserNs = (cloneFlags & CLONE.NEWUSER) !== 0;
  const uidMappings = idMappings(linux.uidMappings, 'linux.uidMappings');
  const gidMappings = idMappings(linux.gidMappings, 'linux.gidMappings');
  if (newUserNs && (uidMappings.length === 0 || gidMappings.length === 0)) {
    throw new PlanError('linux.uidMappings', 'a new user namespace needs uidMappings and gidMappings');
  }
  if (!newUserNs && (uidMappings.length > 0 || gidMappings.length > 0)) {
    throw new PlanError('linux.uidMappings', 'mappings are given but no new user namespace is requested');
  }
  // A uts namespace of its own, new or joined by path: never the host's.
  const ownUts = seen.has('uts');
  if (spec.hostname && !ownUts) throw new PlanError('hostname', 'setting a hostname needs a uts namespace');
  if (spec.domainname && !ownUts) throw new PlanError('domainname', 'setting a domainname needs a uts namespace');

  const mounts = (spec.mounts ?? []).flatMap((m, i) => planMount(m, i, ctx.bundle, ctx));
  // /dev bound from the host (privileged containers) already has its devices.
  const devBound = mounts.some((m) => m.destination === '/dev' && m.bind);
  const devices = devBound ? [] : planDevices(spec);
  const hasPts = mounts.some((m) => m.destination === '/dev/pts');
  const symlinks = devBound
    ? []
    : [
        { target: '/proc/self/fd', link: '/dev/fd' },
        { target: '/proc/self/fd/0', link: '/dev/stdin' },
        { target: '/proc/self/fd/1', link: '/dev/stdout' },
        { target: '/proc/self/fd/2', link: '/dev/stderr' },
        // runc links /dev/core only where the kernel has /proc/kcore.
        ...(ctx.hostHasKcore ? [{ target: '/proc/kcore', link: '/dev/core' }] : []),
        ...(hasPts ? [{ target: 'pts/ptmx', link: '/dev/ptmx' }] : []),
      ];

  let rootfsPropagation = 0;
  if (linux.rootfsPropagation) {
    const p = PROPAGATION_OPTIONS[linux.rootfsPropagation];
    if (p === undefined) throw new PlanError('linux.rootfsPropagation', `unknown propagation "${linux.rootfsPropagation}"`);
    rootfsPropagation = p;
  }
  const oomScoreAdj = spec.process?.oomScoreAdj;
  if (oomScoreAdj !== undefined && (!Number.isInteger(oomScoreAdj) || oomScoreAdj < -1000 || oomScoreAdj > 1000)) {
    throw new PlanError('process.oomScoreAdj', 'must be an integer in -1000..1000');
  }
  validateHooks(spec);
  const prestart = spec.hooks?.prestart ?? [];
  const createRuntime = spec.hooks?.createRuntime ?? [];

  return {
    rootfs,
    rootfsReadonly: spec.root.readonly ?? false,
    rootfsPropagation,
    cloneFlags,
    unshareCgroupNs,
    joinNamespaces: joins,
    uidMappings,
    gidMappings,
    hostname: spec.hostname ?? null,
    domainname: spec.domainname ?? null,
    mounts,
    devices,
    bindDevices: newUserNs || joins.some((j) => j.flag === CLONE.NEWUSER),
    symlinks,
    maskedPaths: (linux.maskedPaths ?? []).map(cleanPath),
    readonlyPaths: (linux.readonlyPaths ?? []).map(cleanPath),
    sysctls: Object.entries(linux.sysctl ?? {}).map(([key, value]) => {
      // A file under /proc/sys, never a path that climbs out of it.
      if (!/^[A-Za-z0-9_-]+([./][A-Za-z0-9_-]+)*$/.test(key)) throw new PlanError(`linux.sysctl[${key}]`, 'is not a sysctl name');
      return { key, value };
    }),
    oomScoreAdj: oomScoreAdj ?? null,
    cgroupProcs: ctx.cgroupProcs,
    oomWatch: ctx.memoryCgroup ? [ctx.cgroupVersion, ctx.memoryCgroup] : null,
    pauseForHooks: prestart.length + createRuntime.length > 0,
    setupDeadline: ctx.setupDeadline ?? null,
    hooks: {
      createContainer: planHooks(spec.hooks?.createContainer, 'createContainer'),
      startContainer: planHooks(spec.hooks?.startContainer, 'startContainer'),
    },
    hookState: { ociVersion: spec.ociVersion, id: ctx.id, status: 'creating', bundle: ctx.bundle, annotations: spec.annotations ?? {} },
    process: planProcess(spec.process, linux.seccomp),
    pause: ctx.pause === true,
  };
}
