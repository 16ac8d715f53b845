/** The pure half of the cgroup module: host probing, path rules and file formats. */
import { cgroupDriver, cgroupVersion } from '../../src/sandbox/cgroups';
import { deviceRules } from '../../src/sandbox/cgroups/devices';
import { expandSlice, parseMountinfo, resolveCgroupsPath } from '../../src/sandbox/cgroups/layout';
import { orderMemoryWrites, V1Driver, v1Writes } from '../../src/sandbox/cgroups/v1';
import { sharesToWeight, V2Driver, v2Writes } from '../../src/sandbox/cgroups/v2';

// /proc/self/mountinfo excerpts: the rig's hybrid host, and a pure cgroup v2 host (Debian 12 default).
const HYBRID = `35 24 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
37 35 0:32 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
40 35 0:35 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
41 35 0:36 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,cpu,cpuacct
42 35 0:37 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,pids`;
const V2 = `30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot`;

describe('probing', () => {
  it('finds v1 hierarchies and the unified mount on a hybrid host, and calls it v1', () => {
    const hs = parseMountinfo(HYBRID);
    expect(hs.map((h) => [h.version, h.mountpoint, h.controllers.join(',')])).toEqual([
      [2, '/sys/fs/cgroup/unified', ''],
      [1, '/sys/fs/cgroup/systemd', 'name=systemd'],
      [1, '/sys/fs/cgroup/memory', 'memory'],
      [1, '/sys/fs/cgroup/cpu,cpuacct', 'cpu,cpuacct'],
      [1, '/sys/fs/cgroup/pids', 'pids'],
    ]);
    expect(cgroupVersion(hs)).toBe(1);
    expect(cgroupDriver(hs)).toBeInstanceOf(V1Driver);
  });

  it('calls a unified-only host v2', () => {
    expect(cgroupVersion(parseMountinfo(V2))).toBe(2);
    expect(cgroupDriver(parseMountinfo(V2))).toBeInstanceOf(V2Driver);
  });
});

describe('cgroupsPath', () => {
  it.each([
    [undefined, '/tsbox/c1'],
    ['/kubepods/besteffort/pod1/c1', '/kubepods/besteffort/pod1/c1'],
    ['relative/c1', '/own/relative/c1'],
    ['system.slice:cri-containerd:abc', '/system.slice/cri-containerd-abc.scope'],
    ['kubepods-besteffort-pod1.slice:cri-containerd:abc', '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-abc.scope'],
    [':docker:abc', '/system.slice/docker-abc.scope'],
  ])('%s → %s', (input, out) => {
    expect(resolveCgroupsPath(input, 'c1', '/own')).toBe(out);
  });

  it('refuses .. and malformed slices', () => {
    expect(() => resolveCgroupsPath('/a/../../etc', 'c1')).toThrow('".." is not allowed');
    expect(() => expandSlice('a--b.slice')).toThrow('invalid slice');
    expect(() => expandSlice('nope')).toThrow('is not a systemd slice');
    expect(expandSlice('-.slice')).toBe('/');
  });
});

describe('limits as file writes', () => {
  const resources = {
    memory: { limit: 1 << 26, reservation: 1 << 25, swap: 1 << 27 },
    cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0' },
    pids: { limit: 20 },
  };

  it('v1: one file per limit in its controller, period before quota', () => {
    expect(v1Writes(resources).map((w) => `${w.controller}/${w.file}=${w.value}`)).toEqual([
      'memory/memory.limit_in_bytes=67108864',
      'memory/memory.memsw.limit_in_bytes=134217728',
      'memory/memory.soft_limit_in_bytes=33554432',
      'cpu/cpu.shares=512',
      'cpu/cpu.cfs_period_us=100000',
      'cpu/cpu.cfs_quota_us=50000',
      'cpuset/cpuset.cpus=0',
      'pids/pids.max=20',
    ]);
  });

  it('v1: device rules deny everything first, then the spec, then the defaults', () => {
    const w = v1Writes({
      devices: [
        { allow: false, access: 'rwm' },
        { allow: true, type: 'c', major: 10, minor: 229, access: 'rw' },
      ],
    });
    expect(w.slice(0, 3).map((x) => `${x.file} ${x.value}`)).toEqual(['devices.deny a', 'devices.deny a *:* rwm', 'devices.allow c 10:229 rw']);
    expect(w.some((x) => x.value === 'c 1:3 rwm')).toBe(true);
  });

  it('device rules for the v2 filter: deny all, the spec in order, the defaults; "u" is a char device', () => {
    const rules = deviceRules([{ allow: true, type: 'u', major: 10, minor: -1, access: 'rw' }]);
    expect(rules.slice(0, 3)).toEqual([
      { allow: false, kind: 'a', major: null, minor: null, access: 'rwm' },
      { allow: true, kind: 'c', major: 10, minor: null, access: 'rw' },
      { allow: true, kind: 'c', major: null, minor: null, access: 'm' },
    ]);
    expect(() => deviceRules([{ allow: true, access: 'rwx' }])).toThrow('linux.resources.devices[0].access: "rwx" is not made of r, w and m');
  });

  it('v2: converted values in the unified files', () => {
    expect(v2Writes(resources).map((w) => `${w.file}=${w.value}`)).toEqual([
      'memory.max=67108864',
      'memory.low=33554432',
      'memory.swap.max=67108864',
      'cpu.weight=20',
      'cpu.max=50000 100000',
      'cpuset.cpus=0',
      'pids.max=20',
    ]);
    expect(v2Writes({ cpu: { quota: -1, period: 100000 }, memory: { limit: -1, swap: -1 } }).map((w) => `${w.file}=${w.value}`)).toEqual([
      'memory.max=max',
      'memory.swap.max=max',
      'cpu.max=max 100000',
    ]);
    expect(v2Writes({ unified: { 'memory.high': '1000000' } })[0]).toMatchObject({ file: 'memory.high', value: '1000000' });
    expect(() => v2Writes({ unified: { '../x': '1' } })).toThrow('invalid key');
  });

  it('converts cpu shares to weight like runc', () => {
    expect([2, 1024, 262144].map(sharesToWeight)).toEqual([1, 39, 10000]);
  });
});

describe('memory limit order on v1', () => {
  const writes = (limit: number, swap: number) => v1Writes({ memory: { limit, swap } }).map((w) => w.file);
  it('raises memsw before memory when the new limit is above the current swap limit', () => {
    expect(orderMemoryWrites(v1Writes({ memory: { limit: 100, swap: 200 } }), () => '50')).toMatchObject([
      { file: 'memory.memsw.limit_in_bytes' },
      { file: 'memory.limit_in_bytes' },
    ]);
  });
  it('keeps memory first when lowering', () => {
    expect(orderMemoryWrites(v1Writes({ memory: { limit: 10, swap: 20 } }), () => '50').map((w) => w.file)).toEqual(writes(10, 20));
  });
});
