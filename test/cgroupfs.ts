/**
 * What tests read of a container's cgroup, on the layout the host has: cgroup v1 (one
 * hierarchy per controller, e.g. this rig's hybrid host) or v2 alone (the VM lane,
 * scripts/vm). Tests ask for "the memory limit of <path>", not for a file name, so every
 * cgroup test runs unchanged on both.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

const CGROUP2_SUPER_MAGIC = 0x63677270;
const ROOT = '/sys/fs/cgroup';

/** True on a v2-only host: /sys/fs/cgroup itself is the cgroup2 mount. */
export const cgroupV2 = fs.statfsSync(ROOT).type === CGROUP2_SUPER_MAGIC;

type Controller = 'memory' | 'pids' | 'cpu' | 'cpuacct' | 'freezer';

/** The directory of cgroup `rel` (e.g. `default/c1`) holding `controller`'s files. */
export function cgroupDir(controller: Controller, rel: string): string {
  return cgroupV2 ? path.join(ROOT, rel) : path.join(ROOT, controller, rel);
}

function read(controller: Controller, rel: string, file: string): string {
  return fs.readFileSync(path.join(cgroupDir(controller, rel), file), 'utf8').trim();
}

/** Whether cgroup `rel` exists in any hierarchy (what "nothing left behind" checks). */
export function cgroupExists(rel: string): boolean {
  const roots = cgroupV2
    ? [ROOT]
    : fs
        .readdirSync(ROOT, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => path.join(ROOT, e.name));
  return roots.some((r) => fs.existsSync(path.join(r, rel)));
}

/** The child cgroups of `rel` in any hierarchy, by name. */
export function cgroupChildren(rel: string): string[] {
  const controllers: Controller[] = cgroupV2 ? ['memory'] : ['memory', 'cpu', 'pids', 'freezer'];
  const names = controllers.flatMap((c) => {
    const dir = cgroupDir(c, rel);
    return fs.existsSync(dir)
      ? fs
          .readdirSync(dir, { withFileTypes: true })
          .filter((d) => d.isDirectory())
          .map((d) => d.name)
      : [];
  });
  return [...new Set(names)];
}

/** The memory limit in bytes as the kernel shows it (v2 says "max" where v1 says 2^63-4096). */
export function memoryLimit(rel: string): string {
  return read('memory', rel, cgroupV2 ? 'memory.max' : 'memory.limit_in_bytes');
}

/** The CFS quota in µs per period ("max"/-1 when unlimited). */
export function cpuQuota(rel: string): string {
  return cgroupV2 ? read('cpu', rel, 'cpu.max').split(' ')[0] : read('cpu', rel, 'cpu.cfs_quota_us');
}

/** v1 cpu.shares, or v2 cpu.weight (runc's mapping: 512 shares are weight 20). */
export function cpuWeight(rel: string): string {
  return read('cpu', rel, cgroupV2 ? 'cpu.weight' : 'cpu.shares');
}

/** CPU time used, in nanoseconds. */
export function cpuUsageNs(rel: string): number {
  if (!cgroupV2) return Number(read('cpuacct', rel, 'cpuacct.usage'));
  const line = read('cpu', rel, 'cpu.stat')
    .split('\n')
    .find((l) => l.startsWith('usage_usec '));
  return Number(line?.split(' ')[1] ?? NaN) * 1000;
}

export function pidsCurrent(rel: string): number {
  return Number(read('pids', rel, 'pids.current'));
}

export function frozen(rel: string): boolean {
  return cgroupV2 ? /^frozen 1$/m.test(read('freezer', rel, 'cgroup.events')) : read('freezer', rel, 'freezer.state') === 'FROZEN';
}

/** The pids in `rel`, one per line. */
export function cgroupProcs(rel: string): string {
  return read('memory', rel, 'cgroup.procs');
}

/** The memory controller's cgroup path in a /proc/<pid>/cgroup text (v2: the one path). */
export function memoryCgroupOf(procCgroup: string): string | undefined {
  const line = procCgroup.split('\n').find((l) => (cgroupV2 ? l.startsWith('0::') : /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l)));
  return line?.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
}
