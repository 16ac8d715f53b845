/**
 * The devices controller: the spec's device rules plus runc's defaults, enforced by the
 * v1 devices cgroup (v1.ts) and, on any cgroup2 directory, by an eBPF program.
 */
import type { DeviceRule } from '../../oci/spec';
import { native, type DeviceFilterRule } from '../../native/addon';
import { EngineError } from '../errors';

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

/** A rule as the v1 devices.allow / devices.deny files take it. */
export function v1DeviceRule(r: DeviceFilterRule): string {
  return `${r.kind} ${r.major ?? '*'}:${r.minor ?? '*'} ${r.access}`;
}

/** cgroup v2 has no devices files: the rules become an eBPF program on the directory. */
export function attachDeviceFilter(dir: string, rules: DeviceFilterRule[]): void {
  try {
    native.setDeviceFilter(dir, rules);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new EngineError('Internal', `linux.resources.devices: ${err.message}`, {
      step: 'attach the cgroup v2 device filter',
      errno: err.code,
      field: 'linux.resources.devices',
    });
  }
}
