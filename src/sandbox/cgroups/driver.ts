/**
 * What the engine does with a container's cgroup, whatever the host's cgroup version:
 * one interface, a driver per version (v1.ts, v2.ts). The parts both versions share
 * (membership, removal, the views a sandbox mounts) live in `BaseDriver`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Resources } from '../../oci/spec';
import type { CgroupView } from '../../oci/plan';
import type { Stats } from './stats';
import { native } from '../../native/addon';
import { type CgroupRecord, type Hierarchy, mkdirs } from './layout';

export interface CgroupDriver {
  readonly version: 1 | 2;
  /** Creates the container's cgroup everywhere it belongs and applies the spec's limits. */
  create(cgroupPath: string, resources: Resources | undefined): CgroupRecord;
  /** Writes limits (create and, later, Update). */
  apply(rec: CgroupRecord, resources: Resources | undefined): void;
  /** Freezes or thaws every process and resolves once the kernel says it is done. */
  freeze(rec: CgroupRecord, frozen: boolean): Promise<void>;
  stats(rec: CgroupRecord): Stats;
  /** The container's directory holding `controller` (v2: its one directory). */
  dirFor(rec: CgroupRecord, controller: string): string | undefined;
  /** Pids in the container's cgroup. */
  pids(rec: CgroupRecord): number[];
  /** The cgroup.procs files a process joins, one per hierarchy. */
  procsFiles(rec: CgroupRecord): string[];
  /** What the sandbox mounts at /sys/fs/cgroup inside the container. */
  views(rec: CgroupRecord): CgroupView[];
  /** Removes what create made; returns the directories that could not be removed. */
  remove(rec: CgroupRecord): Promise<string[]>;
}

export abstract class BaseDriver implements CgroupDriver {
  abstract readonly version: 1 | 2;

  constructor(readonly hierarchies: Hierarchy[]) {}

  /** The hierarchies a container joins, with the name its view gets inside the container. */
  protected abstract targets(): { h: Hierarchy; name: string }[];
  /** Per-level setup of a directory just made (or found) on the way down to the container's. */
  protected abstract prepareLevel(h: Hierarchy, parent: string, dir: string, leaf: boolean): void;
  abstract apply(rec: CgroupRecord, resources: Resources | undefined): void;
  abstract freeze(rec: CgroupRecord, frozen: boolean): Promise<void>;
  abstract stats(rec: CgroupRecord): Stats;
  abstract dirFor(rec: CgroupRecord, controller: string): string | undefined;

  create(cgroupPath: string, resources: Resources | undefined): CgroupRecord {
    const rec: CgroupRecord = { path: cgroupPath, version: this.version, dirs: [], created: [] };
    try {
      for (const { h, name } of this.targets()) {
        const dir = path.join(h.mountpoint, cgroupPath);
        mkdirs(h.mountpoint, dir, rec.created, (parent, cur) => this.prepareLevel(h, parent, cur, cur === dir));
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

  procsFiles(rec: CgroupRecord): string[] {
    return rec.dirs.map((d) => path.join(d.dir, 'cgroup.procs'));
  }

  views(rec: CgroupRecord): CgroupView[] {
    return rec.dirs.map((d) => ({ name: d.name, hostDir: d.dir }));
  }

  /** From the first hierarchy: every process joins all of them. */
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

  /** A directory still busy (processes exiting) is retried (the native CLI's delete does the same). */
  remove(rec: CgroupRecord): Promise<string[]> {
    return native.removeCgroupDirs(rec.created);
  }
}
