/**
 * The cgroup v1 driver: a directory per hierarchy (one hierarchy per controller, or a
 * few co-mounted), as on a hybrid host. A hybrid host's unified hierarchy is joined too:
 * it holds no controllers, but a device filter attached there applies alongside v1's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Resources } from '../../oci/spec';
import { EngineError } from '../errors';
import { BaseDriver } from './driver';
import { attachDeviceFilter, deviceRules, v1DeviceRule } from './devices';
import { type CgroupRecord, type CgroupWrite, type Hierarchy, num, writeFile, writeUntil } from './layout';
import { readCgroupFile, readV1Stats, type Stats } from './stats';

/** linux.resources → v1 file writes per controller, in an order the kernel accepts on a fresh cgroup. */
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

export class V1Driver extends BaseDriver {
  readonly version = 1;

  protected targets(): { h: Hierarchy; name: string }[] {
    const seen = new Set<string>();
    const out: { h: Hierarchy; name: string }[] = [];
    for (const h of this.hierarchies) {
      if (h.version !== 1 || seen.has(h.mountpoint)) continue;
      seen.add(h.mountpoint);
      out.push({ h, name: path.basename(h.mountpoint) });
    }
    const unified = this.hierarchies.find((x) => x.version === 2);
    if (unified) out.push({ h: unified, name: path.basename(unified.mountpoint) });
    return out;
  }

  protected prepareLevel(h: Hierarchy, parent: string, dir: string): void {
    if (h.version !== 1 || !h.controllers.includes('cpuset')) return;
    // A new v1 cpuset starts empty and nothing can join it: inherit the parent's (a read
    // that fails is an error here, not an empty value).
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      if (fs.readFileSync(path.join(dir, f), 'utf8').trim() === '')
        writeFile(path.join(dir, f), fs.readFileSync(path.join(parent, f), 'utf8').trim(), 'linux.cgroupsPath');
    }
  }

  private hierarchyOf(dir: { hierarchy: string }): Hierarchy | undefined {
    return this.hierarchies.find((h) => h.mountpoint === dir.hierarchy);
  }

  apply(rec: CgroupRecord, resources: Resources | undefined): void {
    const unified = rec.dirs.find((d) => this.hierarchyOf(d)?.version === 2);
    if (resources?.devices && unified) attachDeviceFilter(unified.dir, deviceRules(resources.devices));
    for (const w of orderMemoryWrites(v1Writes(resources), (f) => readCgroupFile(this.dirFor(rec, 'memory'), f))) {
      const target = this.dirFor(rec, w.controller);
      if (!target) {
        if (w.file === 'memory.memsw.limit_in_bytes') continue;
        throw EngineError.invalidArgument(`${w.field}: the ${w.controller} cgroup controller is not mounted`, w.field);
      }
      const file = path.join(target, w.file);
      if (w.file === 'memory.memsw.limit_in_bytes' && !fs.existsSync(file)) continue; // no swap accounting
      writeFile(file, w.value, w.field);
    }
  }

  async freeze(rec: CgroupRecord, frozen: boolean): Promise<void> {
    const dir = this.dirFor(rec, 'freezer');
    if (!dir) throw new EngineError('FailedPrecondition', 'no freezer cgroup: pause is not available', { field: 'linux.cgroupsPath' });
    const want = frozen ? 'FROZEN' : 'THAWED';
    await writeUntil(path.join(dir, 'freezer.state'), want, () => readCgroupFile(dir, 'freezer.state').trim() === want, frozen ? 'frozen' : 'thawed');
  }

  /** The container's directory in the hierarchy holding `controller`. */
  dirFor(rec: CgroupRecord, controller: string): string | undefined {
    return rec.dirs.find((d) => this.hierarchyOf(d)?.controllers.includes(controller))?.dir;
  }

  stats(rec: CgroupRecord): Stats {
    return readV1Stats((c) => this.dirFor(rec, c));
  }
}
