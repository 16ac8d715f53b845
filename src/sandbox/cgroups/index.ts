/**
 * cgroups: a driver per version behind one interface (driver.ts). The host is probed once
 * from /proc/self/mountinfo; a hybrid host uses v1 for the controllers mounted there.
 */
import * as fs from 'node:fs';
import type { CgroupDriver } from './driver';
import { type Hierarchy, parseMountinfo } from './layout';
import { V1Driver } from './v1';
import { V2Driver } from './v2';

export type { CgroupDriver } from './driver';
export { type CgroupRecord, type Hierarchy, parseMountinfo, resolveCgroupsPath, expandSlice } from './layout';
export { ParentLedger } from './ledger';
export type { Stats } from './stats';

/** v1 when any v1 controller hierarchy is mounted (hybrid hosts), else v2. */
export function cgroupVersion(hierarchies: Hierarchy[]): 1 | 2 {
  return hierarchies.some((h) => h.version === 1 && h.controllers.some((c) => !c.startsWith('name='))) ? 1 : 2;
}

/** The driver for these cgroup mounts (by default the host's). */
export function cgroupDriver(hierarchies: Hierarchy[] = parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8'))): CgroupDriver {
  return cgroupVersion(hierarchies) === 1 ? new V1Driver(hierarchies) : new V2Driver(hierarchies);
}
