/**
 * cgroups: one manager, two drivers. v1 (a hierarchy per controller, as on the rig's
 * hybrid host) and v2 (unified). The host is probed once from /proc/self/mountinfo; a
 * hybrid host uses v1 for the controllers mounted there. Pure parts (parsing, path
 * resolution, resource → file writes) are exported for unit tests; `Cgroup` does the I/O.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DeviceRule, Resources } from '../oci/spec';
import { native, type DeviceFilterRule } from '../native/addon';
import type { CgroupView } from '../oci/plan';
import { EngineError } from './errors';
import { readCgroupFile, readStats, Stats } from './cgroup-stats';

export interface Hierarchy {
  version: 1 | 2;
  mountpoint: string;
  /** v1 controllers of this hierarchy ("name=systemd" for named ones); v2: "" */
  controllers: string[];
}

/** cgroup mounts from /proc/self/mountinfo text. */
export function parseMountinfo(text: string): Hierarchy[] {
  const out: Hierarchy[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const [fstype, , superOpts = ''] = line.slice(sep + 3).split(' ');
    const mountpoint = left[4];
    if (fstype === 'cgroup2') out.push({ version: 2, mountpoint, controllers: [] });
    else if (fstype === 'cgroup') {
      const controllers = superOpts
        .split(',')
        .filter((o) => o !== 'rw' && o !== 'ro' && !o.startsWith('release_agent') && o !== 'clone_children' && o !== 'noprefix' && o !== 'xattr');
      out.push({ version: 1, mountpoint, controllers });
    }
  }
  return out;
}

/**
 * The cgroupfs path for a spec's cgroupsPath. The systemd form "slice:prefix:name" is
 * translated the way runc's systemd driver names things ("a-b.slice" nests under
 * "a.slice"); tsbox writes cgroupfs itself and never talks to systemd.
 */
export function resolveCgroupsPath(cgroupsPath: string | undefined, id: string, ownCgroup = '/'): string {
  if (!cgroupsPath) return `/tsbox/${id}`;
  const parts = cgroupsPath.split(':');
  if (parts.length === 3 && !cgroupsPath.startsWith('/')) {
    const [slice, prefix, name] = parts;
    const unit = name.endsWith('.slice') ? name : `${prefix ? `${prefix}-` : ''}${name}.scope`;
    return path.posix.join(expandSlice(slice || 'system.slice'), unit);
  }
  if (cgroupsPath.split('/').includes('..')) {
    throw EngineError.invalidArgument(`linux.cgroupsPath: ".." is not allowed in "${cgroupsPath}"`, 'linux.cgroupsPath');
  }
  return cgroupsPath.startsWith('/') ? path.posix.normalize(cgroupsPath) : path.posix.join(ownCgroup, cgroupsPath);
}

/** "a-b-c.slice" → "/a.slice/a-b.slice/a-b-c.slice"; "-.slice" is the root. */
export function expandSlice(slice: string): string {
  if (!slice.endsWith('.slice')) throw EngineError.invalidArgument(`linux.cgroupsPath: "${slice}" is not a systemd slice`, 'linux.cgroupsPath');
  const base = slice.slice(0, -'.slice'.length);
  if (base === '-' || base === '') return '/';
  const words = base.split('-');
  if (words.some((w) => w === '')) throw EngineError.invalidArgument(`linux.cgroupsPath: invalid slice "${slice}"`, 'linux.cgroupsPath');
  let acc = '';
  let out = '';
  for (const w of words) {
    acc = acc ? `${acc}-${w}` : w;
    out += `/${acc}.slice`;
  }
  return out;
}

export interface CgroupWrite {
  /** v1 controller the file belongs to; "" on v2. */
  controller: string;
  file: string;
  value: string;
  field: string;
}

/** The devices every container may use whatever its spec says (runc's list): mknod of
 * any node, the null/zero/full/random/urandom/tty/console/ptmx/pts nodes and tun. */
const DEFAULT_DEVICE_RULES: readonly DeviceFilterRule[] = [
  ['c', null, null, 'm'],
  ['b', null, null, 'm'],
  ['c', 1, 3, 'rwm'],
  ['c', 1, 5, 'rwm'],
  ['c', 1, 7, 'rwm'],
  ['c', 1, 8, 'rwm'],
  ['c', 1, 9, 'rwm'],
  ['c', 5, 0, 'rwm'],
  ['c', 5, 1, 'rwm'],
  ['c', 5, 2, 'rwm'],
  ['c', 136, null, 'rwm'],
  ['c', 10, 200, 'rwm'],
].map(([kind, major, minor, access]) => ({ allow: true, kind, major, minor, access }) as DeviceFilterRule);

/**
 * linux.resources.devices → the rules both drivers enforce: deny everything, the spec's
 * rules in order, then the defaults (the last matching rule decides).
 */
export function deviceRules(devices: DeviceRule[]): DeviceFilterRule[] {
  const rules: DeviceFilterRule[] = [{ allow: false, kind: 'a', major: null, minor: null, access: 'rwm' }];
  devices.forEach((d, i) => {
    const field = `linux.resources.devices[${i}]`;
    const type = d.type ?? 'a';
    if (!['a', 'b', 'c', 'u'].includes(type)) throw EngineError.invalidArgument(`${field}.type: unknown device type "${type}"`, `${field}.type`);
    const access = d.access ?? 'rwm';
    if (!/^[rwm]*$/.test(access)) throw EngineError.invalidArgument(`${field}.access: "${access}" is not made of r, w and m`, `${field}.access`);
    const id = (v: number | undefined) => (v === undefined || v < 0 ? null : v);
    rules.push({ allow: d.allow, kind: type === 'u' ? 'c' : (type as 'a' | 'b' | 'c'), major: id(d.major), minor: id(d.minor), access });
  });
  return [...rules, ...DEFAULT_DEVICE_RULES];
}

function v1DeviceRule(r: DeviceFilterRule): string {
  return `${r.kind} ${r.major ?? '*'}:${r.minor ?? '*'} ${r.access}`;
}

function num(v: number): string {
  return String(Math.trunc(v));
}

/** linux.resources → v1 file writes, in an order the kernel accepts on a fresh cgroup. */
export function v1Writes(r: Resources | undefined): CgroupWrite[] {
  const w: CgroupWrite[] = [];
  if (!r) r = {};
  const add = (controller: string, file: string, value: string, field: string) => w.push({ controller, file, value, field });
  const m = r.memory;
  if (m) {
    if (m.limit !== undefined) add('memory', 'memory.limit_in_bytes', num(m.limit), 'linux.resources.memory.limit');
    if (m.swap !== undefined) add('memory', 'memory.memsw.limit_in_bytes', num(m.swap), 'linux.resources.memory.swap');
    if (m.reservation !== undefined) add('memory', 'memory.soft_limit_in_bytes', num(m.reservation), 'linux.resources.memory.reservation');
    if (m.swappiness !== undefined && m.swappiness <= 100) add('memory', 'memory.swappiness', num(m.swappiness), 'linux.resources.memory.swappiness');
    if (m.disableOOMKiller) add('memory', 'memory.oom_control', '1', 'linux.resources.memory.disableOOMKiller');
  }
  const c = r.cpu;
  if (c) {
    if (c.shares !== undefined && c.shares !== 0) add('cpu', 'cpu.shares', num(c.shares), 'linux.resources.cpu.shares');
    if (c.period !== undefined && c.period !== 0) add('cpu', 'cpu.cfs_period_us', num(c.period), 'linux.resources.cpu.period');
    if (c.quota !== undefined && c.quota !== 0) add('cpu', 'cpu.cfs_quota_us', num(c.quota), 'linux.resources.cpu.quota');
    if (c.cpus) add('cpuset', 'cpuset.cpus', c.cpus, 'linux.resources.cpu.cpus');
    if (c.mems) add('cpuset', 'cpuset.mems', c.mems, 'linux.resources.cpu.mems');
  }
  if (r.pids && r.pids.limit !== undefined && r.pids.limit !== 0) {
    add('pids', 'pids.max', r.pids.limit > 0 ? num(r.pids.limit) : 'max', 'linux.resources.pids.limit');
  }
  if (r.blockIO?.weight) add('blkio', 'blkio.weight', num(r.blockIO.weight), 'linux.resources.blockIO.weight');
  if (r.network?.classID !== undefined) add('net_cls', 'net_cls.classid', num(r.network.classID), 'linux.resources.network.classID');
  (r.network?.priorities ?? []).forEach((p, i) =>
    add('net_prio', 'net_prio.ifpriomap', `${p.name} ${num(p.priority)}`, `linux.resources.network.priorities[${i}]`),
  );
  (r.hugepageLimits ?? []).forEach((h, i) => add('hugetlb', `hugetlb.${h.pageSize}.limit_in_bytes`, num(h.limit), `linux.resources.hugepageLimits[${i}]`));
  if (r.devices) {
    const fields = ['linux.resources.devices', ...r.devices.map((_, i) => `linux.resources.devices[${i}]`)];
    deviceRules(r.devices).forEach((d, i) => {
      add('devices', d.allow ? 'devices.allow' : 'devices.deny', i === 0 ? 'a' : v1DeviceRule(d), fields[i] ?? 'linux.resources.devices');
    });
  }
  return w;
}

/**
 * memory.limit_in_bytes may never exceed memory.memsw.limit_in_bytes: when raising both,
 * the swap limit goes first; when lowering, the memory limit (the kernel says EINVAL else).
 */
export function orderMemoryWrites(writes: CgroupWrite[], current: (file: string) => string): CgroupWrite[] {
  const mem = writes.findIndex((w) => w.file === 'memory.limit_in_bytes');
  const swap = writes.findIndex((w) => w.file === 'memory.memsw.limit_in_bytes');
  if (mem < 0 || swap < 0 || swap < mem) return writes;
  const now = Number(current('memory.memsw.limit_in_bytes').trim());
  const next = Number(writes[mem].value);
  if (!(next > now || Number(writes[swap].value) === -1)) return writes;
  const out = [...writes];
  const [s] = out.splice(swap, 1);
  out.splice(mem, 0, s);
  return out;
}

/** cpu.shares (2..262144) → cpu.weight (1..10000), the conversion runc and the kernel docs use. */
export function sharesToWeight(shares: number): number {
  return Math.trunc(1 + ((shares - 2) * 9999) / 262142);
}

/** blkio.weight (10..1000) → io.weight (1..10000). */
export function blkioToIoWeight(weight: number): number {
  return Math.trunc(1 + ((weight - 10) * 9999) / 990);
}

/** linux.resources → v2 file writes (device rules are an eBPF program: `deviceRules`). */
export function v2Writes(r: Resources | undefined): CgroupWrite[] {
  const w: CgroupWrite[] = [];
  if (!r) return w;
  if (r.network && (r.network.classID !== undefined || (r.network.priorities ?? []).length > 0)) {
    throw EngineError.invalidArgument('linux.resources.network: net_cls and net_prio do not exist on cgroup v2', 'linux.resources.network');
  }
  const add = (file: string, value: string, field: string) => w.push({ controller: '', file, value, field });
  const m = r.memory;
  if (m) {
    if (m.limit !== undefined) add('memory.max', m.limit > 0 ? num(m.limit) : 'max', 'linux.resources.memory.limit');
    if (m.reservation !== undefined) add('memory.low', num(m.reservation), 'linux.resources.memory.reservation');
    if (m.swap !== undefined) {
      // v1's swap limit counts memory + swap; v2 limits swap alone.
      const swap = m.swap < 0 ? 'max' : num(Math.max(0, m.swap - (m.limit ?? 0)));
      add('memory.swap.max', swap, 'linux.resources.memory.swap');
    }
  }
  const c = r.cpu;
  if (c) {
    if (c.shares) add('cpu.weight', num(sharesToWeight(c.shares)), 'linux.resources.cpu.shares');
    if (c.quota !== undefined || c.period !== undefined) {
      const quota = c.quota !== undefined && c.quota > 0 ? num(c.quota) : 'max';
      add('cpu.max', `${quota} ${num(c.period || 100000)}`, 'linux.resources.cpu.quota');
    }
    if (c.cpus) add('cpuset.cpus', c.cpus, 'linux.resources.cpu.cpus');
    if (c.mems) add('cpuset.mems', c.mems, 'linux.resources.cpu.mems');
  }
  if (r.pids && r.pids.limit !== undefined && r.pids.limit !== 0) add('pids.max', r.pids.limit > 0 ? num(r.pids.limit) : 'max', 'linux.resources.pids.limit');
  if (r.blockIO?.weight) add('io.weight', `default ${blkioToIoWeight(r.blockIO.weight)}`, 'linux.resources.blockIO.weight');
  (r.hugepageLimits ?? []).forEach((h, i) => add(`hugetlb.${h.pageSize}.max`, num(h.limit), `linux.resources.hugepageLimits[${i}]`));
  for (const [file, value] of Object.entries(r.unified ?? {})) {
    if (file.includes('/')) throw EngineError.invalidArgument(`linux.resources.unified: invalid key "${file}"`, 'linux.resources.unified');
    add(file, value, `linux.resources.unified.${file}`);
  }
  return w;
}

/** A container's cgroup directories, one per hierarchy it is in. */
export interface CgroupRecord {
  path: string;
  version: 1 | 2;
  /** Every directory of this cgroup (one per hierarchy). */
  dirs: { hierarchy: string; name: string; dir: string }[];
  /** Directories tsbox created (parents included), deepest last. */
  created: string[];
}

function writeFile(file: string, value: string, field: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new EngineError(err.code === 'ENOENT' ? 'InvalidArgument' : 'Internal', `${field}: write ${value} to ${file}: ${err.code}`, {
      step: `write ${file}`,
      errno: err.code,
      field,
    });
  }
}

export class CgroupManager {
  constructor(readonly hierarchies: Hierarchy[]) {}

  static probe(): CgroupManager {
    return new CgroupManager(parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')));
  }

  /** v1 when any v1 controller hierarchy is mounted (hybrid hosts), else v2. */
  get version(): 1 | 2 {
    return this.hierarchies.some((h) => h.version === 1 && h.controllers.some((c) => !c.startsWith('name='))) ? 1 : 2;
  }

  /** The hierarchies a container joins: v1 all v1 hierarchies (named ones too); v2 the unified one. */
  private targets(): { h: Hierarchy; name: string }[] {
    if (this.version === 2) {
      const h = this.hierarchies.find((x) => x.version === 2);
      return h ? [{ h, name: '' }] : [];
    }
    const seen = new Set<string>();
    const out: { h: Hierarchy; name: string }[] = [];
    for (const h of this.hierarchies) {
      if (h.version !== 1 || seen.has(h.mountpoint)) continue;
      seen.add(h.mountpoint);
      out.push({ h, name: path.basename(h.mountpoint) });
    }
    // A hybrid host's unified hierarchy too (as systemd does): it holds no controllers,
    // but its device filter applies alongside v1's devices cgroup.
    const unified = this.hierarchies.find((x) => x.version === 2);
    if (unified) out.push({ h: unified, name: path.basename(unified.mountpoint) });
    return out;
  }

  /** Creates the container's cgroup everywhere and applies the spec's limits. */
  create(cgroupPath: string, resources: Resources | undefined): CgroupRecord {
    const rec: CgroupRecord = { path: cgroupPath, version: this.version, dirs: [], created: [] };
    try {
      for (const { h, name } of this.targets()) {
        const dir = path.join(h.mountpoint, cgroupPath);
        this.mkdirs(h, dir, rec);
        rec.dirs.push({ hierarchy: h.mountpoint, name, dir });
      }
      // Device rules always (runc's defaults when the spec has none): without them a
      // container with CAP_MKNOD could open any device on cgroup v2.
      this.apply(rec, { ...resources, devices: resources?.devices ?? [] });
      return rec;
    } catch (e) {
      void this.remove(rec);
      throw e;
    }
  }

  private mkdirs(h: Hierarchy, dir: string, rec: CgroupRecord): void {
    const rel = path.relative(h.mountpoint, dir).split('/').filter(Boolean);
    let cur = h.mountpoint;
    for (const part of rel) {
      const parent = cur;
      cur = path.join(cur, part);
      try {
        fs.mkdirSync(cur);
        rec.created.push(cur);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
          throw new EngineError('Internal', `linux.cgroupsPath: mkdir ${cur}: ${(e as NodeJS.ErrnoException).code}`, {
            step: `mkdir ${cur}`,
            errno: (e as NodeJS.ErrnoException).code,
            field: 'linux.cgroupsPath',
          });
        }
      }
      if (h.version === 1 && h.controllers.includes('cpuset')) {
        // A new v1 cpuset starts empty and nothing can join it: inherit the parent's.
        for (const f of ['cpuset.cpus', 'cpuset.mems']) {
          const mine = path.join(cur, f);
          if (fs.readFileSync(mine, 'utf8').trim() === '') writeFile(mine, fs.readFileSync(path.join(parent, f), 'utf8').trim(), 'linux.cgroupsPath');
        }
      }
      if (h.version === 2 && cur !== dir) {
        // Delegate the controllers the parent has down to the next level.
        const avail = fs.readFileSync(path.join(cur, 'cgroup.controllers'), 'utf8').trim().split(/\s+/).filter(Boolean);
        if (avail.length) {
          try {
            fs.writeFileSync(path.join(cur, 'cgroup.subtree_control'), avail.map((c) => `+${c}`).join(' '));
          } catch {
            // Not fatal: the limits that need a missing controller fail with a clear error.
          }
        }
      }
    }
  }

  /** Writes limits (create and, later, Update). */
  apply(rec: CgroupRecord, resources: Resources | undefined): void {
    if (resources?.devices) this.setDeviceFilter(rec, deviceRules(resources.devices));
    if (rec.version === 2) {
      const dir = rec.dirs[0]?.dir;
      if (!dir) return;
      for (const w of v2Writes(resources)) writeFile(path.join(dir, w.file), w.value, w.field);
      return;
    }
    for (const w of orderMemoryWrites(v1Writes(resources), (f) => readCgroupFile(this.dirFor(rec, 'memory') ?? '', f))) {
      const target = rec.dirs.find((d) => this.hierarchies.find((h) => h.mountpoint === d.hierarchy)?.controllers.includes(w.controller));
      if (!target) {
        if (w.controller === 'memory' && w.file === 'memory.memsw.limit_in_bytes') continue;
        throw EngineError.invalidArgument(`${w.field}: the ${w.controller} cgroup controller is not mounted`, w.field);
      }
      const file = path.join(target.dir, w.file);
      if (w.file === 'memory.memsw.limit_in_bytes' && !fs.existsSync(file)) continue; // no swap accounting
      writeFile(file, w.value, w.field);
    }
  }

  /** cgroup v2 has no devices files: its rules are an eBPF program on the directory. */
  private setDeviceFilter(rec: CgroupRecord, rules: DeviceFilterRule[]): void {
    const v2 = rec.dirs.find((d) => this.hierarchies.find((h) => h.mountpoint === d.hierarchy)?.version === 2);
    if (!v2) return;
    try {
      native.setDeviceFilter(v2.dir, rules);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new EngineError('Internal', `linux.resources.devices: ${err.message}`, {
        step: 'attach the cgroup v2 device filter',
        errno: err.code,
        field: 'linux.resources.devices',
      });
    }
  }

  /** The container's directory in the v1 hierarchy holding `controller`. */
  dirFor(rec: CgroupRecord, controller: string): string | undefined {
    if (rec.version === 2) return rec.dirs[0]?.dir;
    return rec.dirs.find((d) => this.hierarchies.find((h) => h.mountpoint === d.hierarchy)?.controllers.includes(controller))?.dir;
  }

  stats(rec: CgroupRecord): Stats {
    return readStats(rec, (c) => this.dirFor(rec, c));
  }

  /**
   * Freezes or thaws every process of the cgroup and resolves once the kernel says it is
   * done (v1 freezer.state FREEZING → FROZEN; v2 cgroup.events "frozen 1").
   */
  async freeze(rec: CgroupRecord, frozen: boolean): Promise<void> {
    const dir = this.dirFor(rec, 'freezer');
    if (!dir) throw new EngineError('FailedPrecondition', 'no freezer cgroup: pause is not available', { field: 'linux.cgroupsPath' });
    const [file, value, done] =
      rec.version === 2
        ? ['cgroup.freeze', frozen ? '1' : '0', () => readCgroupFile(dir, 'cgroup.events').includes(`frozen ${frozen ? 1 : 0}`)]
        : ['freezer.state', frozen ? 'FROZEN' : 'THAWED', () => readCgroupFile(dir, 'freezer.state').trim() === (frozen ? 'FROZEN' : 'THAWED')];
    for (let attempt = 0; attempt < 1000; attempt++) {
      writeFile(path.join(dir, file), value, 'linux.cgroupsPath');
      if (done()) return;
      await new Promise((r) => setTimeout(r, 1));
    }
    throw new EngineError('Internal', `cgroup ${dir} did not become ${frozen ? 'frozen' : 'thawed'}`, { step: `write ${file}` });
  }

  procsFiles(rec: CgroupRecord): string[] {
    return rec.dirs.map((d) => path.join(d.dir, 'cgroup.procs'));
  }

  views(rec: CgroupRecord): CgroupView[] {
    return rec.dirs.map((d) => ({ name: d.name, hostDir: d.dir }));
  }

  /** Pids in the container's cgroup (from the first hierarchy: every process joins all). */
  pids(rec: CgroupRecord): number[] {
    const first = rec.dirs[0];
    if (!first) return [];
    try {
      return fs.readFileSync(path.join(first.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    } catch {
      // The cgroup is gone, and with it every process it held.
      return [];
    }
  }

  /** Removes what create made; a directory still busy (processes exiting) is retried. */
  async remove(rec: CgroupRecord): Promise<string[]> {
    const left: string[] = [];
    for (const dir of [...rec.created].reverse()) {
      if (!(await rmdirRetry(dir))) left.push(dir);
    }
    return left;
  }
}

/** rmdir, retried while the kernel still counts exiting tasks in the cgroup (EBUSY). */
async function rmdirRetry(dir: string): Promise<boolean> {
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      fs.rmdirSync(dir);
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY') return false; // ENOTEMPTY: another container's cgroup lives below
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  return false;
}
