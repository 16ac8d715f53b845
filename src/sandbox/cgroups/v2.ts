/**
 * The cgroup v2 driver: one unified directory per container. Controllers are delegated
 * down each level through cgroup.subtree_control; devices are an eBPF program.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Resources } from '../../oci/spec';
import { EngineError } from '../errors';
import { BaseDriver } from './driver';
import { attachDeviceFilter, deviceRules } from './devices';
import { type CgroupRecord, type CgroupWrite, type Hierarchy, num, writeFile, writeUntil } from './layout';
import { readCgroupFile, readV2Stats, type Stats } from './stats';

/** cpu.shares (2..262144) → cpu.weight (1..10000), the conversion runc and the kernel docs use. */
export function sharesToWeight(shares: number): number {
  return Math.trunc(1 + ((shares - 2) * 9999) / 262142);
}

/** blkio.weight (10..1000) → io.weight (1..10000). */
export function blkioToIoWeight(weight: number): number {
  return Math.trunc(1 + ((weight - 10) * 9999) / 990);
}

/** linux.resources → v2 file writes, per controller (device rules: `deviceRules`). */
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

export class V2Driver extends BaseDriver {
  readonly version = 2;

  protected targets(): { h: Hierarchy; name: string }[] {
    const h = this.hierarchies.find((x) => x.version === 2);
    return h ? [{ h, name: '' }] : [];
  }

  protected prepareLevel(_h: Hierarchy, _parent: string, dir: string, leaf: boolean): void {
    if (leaf) return;
    // Delegate the controllers this level has down to the next one.
    const avail = readCgroupFile(dir, 'cgroup.controllers').trim().split(/\s+/).filter(Boolean);
    if (avail.length === 0) return;
    try {
      fs.writeFileSync(path.join(dir, 'cgroup.subtree_control'), avail.map((c) => `+${c}`).join(' '));
    } catch {
      // Not fatal: the limits that need a missing controller fail with a clear error.
    }
  }

  apply(rec: CgroupRecord, resources: Resources | undefined): void {
    const dir = rec.dirs[0]?.dir;
    if (!dir) return;
    if (resources?.devices) attachDeviceFilter(dir, deviceRules(resources.devices));
    for (const w of v2Writes(resources)) writeFile(path.join(dir, w.file), w.value, w.field);
  }

  async freeze(rec: CgroupRecord, frozen: boolean): Promise<void> {
    const dir = rec.dirs[0]?.dir;
    if (!dir) throw new EngineError('FailedPrecondition', 'no cgroup: pause is not available', { field: 'linux.cgroupsPath' });
    const want = `frozen ${frozen ? 1 : 0}`;
    await writeUntil(
      path.join(dir, 'cgroup.freeze'),
      frozen ? '1' : '0',
      () => readCgroupFile(dir, 'cgroup.events').includes(want),
      frozen ? 'frozen' : 'thawed',
    );
  }

  dirFor(rec: CgroupRecord): string | undefined {
    return rec.dirs[0]?.dir;
  }

  stats(rec: CgroupRecord): Stats {
    return readV2Stats(rec.dirs[0]?.dir);
  }
}
