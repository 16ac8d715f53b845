/** spec → plan, asserted without root or a kernel. */
import { planContainer, planProcess, parseMountOptions, capNames, PlanError, PlanContext } from '../../src/oci/plan';
import { CLONE, MS, parseSignal } from '../../src/oci/linux';
import { defaultSpec } from '../engine/bundle';
import type { Spec } from '../../src/oci/spec';

const ctx: PlanContext = {
  id: 'c1',
  bundle: '/b',
  cgroupProcs: ['/sys/fs/cgroup/memory/x/cgroup.procs'],
  cgroupViews: [
    { name: 'memory', hostDir: '/sys/fs/cgroup/memory/x' },
    { name: 'pids', hostDir: '/sys/fs/cgroup/pids/x' },
  ],
  cgroupVersion: 1,
};

function spec(edit?: (s: Spec) => void): Spec {
  const s = defaultSpec('c1', ['sh']);
  edit?.(s);
  return s;
}

function planError(s: Spec): PlanError {
  try {
    planContainer(s, ctx);
  } catch (e) {
    if (e instanceof PlanError) return e;
    throw e;
  }
  throw new Error('planContainer accepted the spec');
}

describe('planContainer', () => {
  it('creates the listed namespaces and resolves the rootfs against the bundle', () => {
    const p = planContainer(spec(), ctx);
    expect(p.rootfs).toBe('/b/rootfs');
    expect(p.cloneFlags).toBe(CLONE.NEWPID | CLONE.NEWNET | CLONE.NEWIPC | CLONE.NEWUTS | CLONE.NEWNS);
    expect(p.joinNamespaces).toEqual([]);
    expect(p.hostname).toBe('c1');
    expect(p.cgroupProcs).toEqual(ctx.cgroupProcs);
    expect(p.pauseForHooks).toBe(false);
  });

  it('joins namespaces given by path, user namespace first, and unshares cgroupns late', () => {
    const p = planContainer(
      spec((s) => {
        s.linux!.namespaces = [{ type: 'mount' }, { type: 'network', path: '/proc/9/ns/net' }, { type: 'user', path: '/proc/9/ns/user' }, { type: 'cgroup' }];
        s.hostname = undefined;
      }),
      ctx,
    );
    expect(p.joinNamespaces.map((j) => j.flag)).toEqual([CLONE.NEWUSER, CLONE.NEWNET]);
    expect(p.cloneFlags).toBe(CLONE.NEWNS);
    expect(p.unshareCgroupNs).toBe(true);
    expect(p.bindDevices).toBe(true);
  });

  it('turns mount options into flags, propagation and data', () => {
    expect(parseMountOptions(['nosuid', 'noexec', 'nodev', 'ro', 'rprivate', 'mode=755', 'size=64k'])).toEqual({
      flags: MS.NOSUID | MS.NOEXEC | MS.NODEV | MS.RDONLY,
      propagation: MS.PRIVATE | MS.REC,
      recursiveSet: 0,
      recursiveClear: 0,
      data: ['mode=755', 'size=64k'],
      dataIndex: [5, 6],
    });
    expect(parseMountOptions(['ro', 'rw']).flags).toBe(0);
    expect(parseMountOptions(['rro', 'rnosuid', 'rsuid', 'rexec'])).toMatchObject({ flags: 0, recursiveSet: MS.RDONLY, recursiveClear: MS.NOSUID | MS.NOEXEC });
    const typo = spec((s) => s.mounts!.push({ destination: '/d', type: 'bind', source: '/x', options: ['rbind', 'rsharedd'] }));
    expect(() => planContainer(typo, ctx)).toThrow('mounts[6].options[1]: unknown option "rsharedd" for a bind mount');
    // Filesystem data on a bind mount means nothing to the kernel: ignored, as runc does.
    const data = planContainer(
      spec((s) => s.mounts!.push({ destination: '/d', type: 'bind', source: '/x', options: ['rbind', 'mode=755'] })),
      ctx,
    );
    expect(data.mounts.find((m) => m.destination === '/d')).toMatchObject({ bind: true, data: '' });
  });

  it('plans bind mounts with a remount for their flags, relative sources from the bundle', () => {
    const p = planContainer(
      spec((s) => s.mounts!.push({ destination: '/data/', type: 'none', source: 'data', options: ['rbind', 'ro'] })),
      ctx,
    );
    expect(p.mounts.at(-1)).toEqual({
      source: '/b/data',
      destination: '/data',
      fstype: '',
      flags: MS.BIND | MS.REC | MS.RDONLY,
      data: '',
      propagation: 0,
      bind: true,
      remount: true,
      recursiveSet: 0,
      recursiveClear: 0,
      field: 'mounts[6] (/data/)',
    });
  });

  it('expands a cgroup mount into a tmpfs and one bind per v1 hierarchy', () => {
    const p = planContainer(
      spec((s) => s.mounts!.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid'] })),
      ctx,
    );
    expect(p.mounts.slice(-3).map((m) => [m.destination, m.fstype || 'bind', m.source])).toEqual([
      ['/sys/fs/cgroup', 'tmpfs', 'tmpfs'],
      ['/sys/fs/cgroup/memory', 'bind', '/sys/fs/cgroup/memory/x'],
      ['/sys/fs/cgroup/pids', 'bind', '/sys/fs/cgroup/pids/x'],
    ]);
    expect(p.mounts.at(-1)!.flags & MS.RDONLY).toBe(MS.RDONLY);
  });

  it('creates default devices and /dev links unless /dev is bound from the host', () => {
    const p = planContainer(spec(), ctx);
    expect(p.devices.map((d) => d.path)).toEqual(['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty']);
    expect(p.symlinks).toContainEqual({ target: 'pts/ptmx', link: '/dev/ptmx' });
    const priv = planContainer(
      spec((s) => s.mounts!.splice(1, 1, { destination: '/dev', type: 'bind', source: '/dev', options: ['rbind'] })),
      ctx,
    );
    expect(priv.devices).toEqual([]);
    expect(priv.symlinks).toEqual([]);
  });

  it('pauses for prestart/createRuntime hooks and carries the in-container ones', () => {
    const p = planContainer(
      spec((s) => (s.hooks = { prestart: [{ path: '/bin/true' }], startContainer: [{ path: '/bin/x', timeout: 3 }] })),
      ctx,
    );
    expect(p.pauseForHooks).toBe(true);
    expect(p.hooks.startContainer).toEqual([{ path: '/bin/x', args: [], env: [], timeout: 3, field: 'hooks.startContainer[0]' }]);
    expect(p.hookState).toMatchObject({ id: 'c1', bundle: '/b', status: 'creating' });
  });

  it.each<[string, (s: Spec) => void, string | jest.AsymmetricMatcher]>([
    ['no root', (s) => delete s.root, 'root.path: is required'],
    ['unknown namespace', (s) => s.linux!.namespaces!.push({ type: 'time' }), 'linux.namespaces[5].type: unknown namespace type "time"'],
    ['duplicate namespace', (s) => s.linux!.namespaces!.push({ type: 'pid' }), 'linux.namespaces[5].type: namespace "pid" is listed twice'],
    ['no mount namespace', (s) => (s.linux!.namespaces = [{ type: 'pid' }]), 'linux.namespaces: a mount namespace is required'],
    ['user ns without maps', (s) => s.linux!.namespaces!.push({ type: 'user' }), 'linux.uidMappings: a new user namespace needs uidMappings and gidMappings'],
    ['hostname without uts', (s) => (s.linux!.namespaces = [{ type: 'mount' }]), 'hostname: setting a hostname needs a uts namespace'],
    [
      'relative mount destination',
      (s) => s.mounts!.push({ destination: 'data', type: 'tmpfs' }),
      'mounts[6].destination: must be an absolute path, got "data"',
    ],
    ['bind without source', (s) => s.mounts!.push({ destination: '/d', type: 'bind' }), 'mounts[6].source: a bind mount needs a source'],
    ['unknown capability', (s) => s.process!.capabilities!.bounding!.push('CAP_FLY'), 'process.capabilities.bounding[3]: unknown capability "CAP_FLY"'],
    ['unknown rlimit', (s) => s.process!.rlimits!.push({ type: 'RLIMIT_FUN', soft: 1, hard: 1 }), 'process.rlimits[1].type: unknown rlimit "RLIMIT_FUN"'],
    ['relative cwd', (s) => (s.process!.cwd = 'tmp'), 'process.cwd: must be an absolute path, got "tmp"'],
    ['no args', (s) => (s.process!.args = []), 'process.args: needs at least one element'],
    [
      'bad seccomp action',
      (s) => (s.linux!.seccomp = { defaultAction: 'SCMP_ACT_NOPE' }),
      'linux.seccomp.defaultAction: invalid seccomp action "SCMP_ACT_NOPE"',
    ],
    [
      'seccomp notify',
      (s) => (s.linux!.seccomp = { defaultAction: 'SCMP_ACT_NOTIFY' }),
      'linux.seccomp.defaultAction: invalid seccomp action "SCMP_ACT_NOTIFY" (seccomp user notification is not supported)',
    ],
    [
      'bad seccomp op',
      (s) =>
        (s.linux!.seccomp = {
          defaultAction: 'SCMP_ACT_ALLOW',
          syscalls: [{ names: ['x'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_WAT' }] }],
        }),
      'linux.seccomp.syscalls[0].args[0].op: invalid seccomp operator "SCMP_CMP_WAT"',
    ],
    ['bad device type', (s) => (s.linux!.devices = [{ path: '/dev/x', type: 'q' }]), 'linux.devices[0].type: unknown device type "q"'],
    ['relative hook', (s) => (s.hooks = { poststop: [{ path: 'x' }] }), 'hooks.poststop[0].path: must be an absolute path, got "x"'],
    ['oom score out of range', (s) => (s.process!.oomScoreAdj = 2000), 'process.oomScoreAdj: must be an integer in -1000..1000'],
    [
      'a host directory bound at /proc',
      (s) => (s.mounts![0] = { destination: '/proc', type: 'bind', source: '/tmp', options: ['rbind'] }),
      'mounts[0].destination: only a proc filesystem can be mounted at /proc',
    ],
    [
      'a tmpfs at /proc',
      (s) => (s.mounts![0] = { destination: '/proc/', type: 'tmpfs', source: 'tmpfs' }),
      'mounts[0].destination: only a proc filesystem can be mounted at /proc',
    ],
    [
      'a bind over a sysctl',
      (s) => s.mounts!.push({ destination: '/proc/sys/net/../kernel/core_pattern', type: 'bind', source: '/tmp/x' }),
      expect.stringMatching(/^mounts\[6\]\.destination: \/proc\/sys\/kernel\/core_pattern is inside \/proc, where only /),
    ],
    [
      'an SELinux label',
      (s) => (s.process!.selinuxLabel = 'system_u:system_r:container_t:s0'),
      'process.selinuxLabel: SELinux labels are not applied by tsbox',
    ],
    [
      'a sysctl name that climbs out of /proc/sys',
      (s) => (s.linux!.sysctl = { '../../sysrq-trigger': 'b' }),
      'linux.sysctl[../../sysrq-trigger]: is not a sysctl name',
    ],
  ])('refuses %s, naming the field', (_name, edit, message) => {
    expect(planError(spec(edit)).message).toEqual(message);
  });
});

describe('planProcess', () => {
  it('refuses a NUL byte in any string rather than letting the kernel cut it short', () => {
    expect(() => planProcess({ user: { uid: 0, gid: 0 }, cwd: '/', args: ['sh', '-c', 'a\u0000b'] }, undefined)).toThrow(
      'process.args[2]: contains a NUL byte',
    );
    expect(() =>
      planContainer(
        spec((s) => s.mounts!.push({ destination: '/d\u0000', type: 'tmpfs', source: 'tmpfs' })),
        ctx,
      ),
    ).toThrow('mounts[6].destination: contains a NUL byte');
    expect(() =>
      planContainer(
        spec((s) => (s.annotations = { 'k\u0000': 'v' })),
        ctx,
      ),
    ).toThrow('annotations: has a key containing a NUL byte');
  });

  it('maps capabilities past bit 31 and unlimited rlimits', () => {
    const p = planProcess(
      {
        user: { uid: 1, gid: 2, additionalGids: [3] },
        cwd: '/',
        args: ['x'],
        capabilities: { bounding: ['CAP_CHOWN', 'SYS_ADMIN', 'CAP_BPF', 'cap_bpf'] },
        rlimits: [{ type: 'RLIMIT_CORE', soft: 2 ** 64, hard: 2 ** 64 }],
      },
      undefined,
    );
    expect(p.capabilities!.bounding).toBe(2 ** 0 + 2 ** 21 + 2 ** 39);
    expect(capNames(p.capabilities!.bounding)).toEqual(['CAP_CHOWN', 'CAP_SYS_ADMIN', 'CAP_BPF']);
    expect(p.rlimits).toEqual([{ resource: 4, soft: null, hard: null, field: 'process.rlimits[0]' }]);
    expect(p).toMatchObject({ uid: 1, gid: 2, additionalGids: [3], terminal: false, consoleSize: null, seccomp: null });
  });

  it('compiles seccomp rules into the plan form', () => {
    const p = planProcess(
      { user: { uid: 0, gid: 0 }, cwd: '/', args: ['x'] },
      {
        defaultAction: 'SCMP_ACT_ERRNO',
        defaultErrnoRet: 38,
        architectures: ['SCMP_ARCH_X86_64'],
        syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 3, valueTwo: 0, op: 'SCMP_CMP_EQ' }] }],
      },
    );
    expect(p.seccomp).toEqual({
      defaultAction: { kind: 'errno', value: 38 },
      architectures: ['SCMP_ARCH_X86_64'],
      rules: [
        { names: ['read'], action: { kind: 'allow', value: null }, args: [{ index: 0, value: 3, valueTwo: 0, op: 'eq' }], field: 'linux.seccomp.syscalls[0]' },
      ],
    });
  });
});

describe('parseSignal', () => {
  it.each([
    ['TERM', 15],
    ['SIGKILL', 9],
    ['9', 9],
    ['hup', 1],
    ['RTMIN+2', 36],
    ['NOPE', undefined],
    ['0', undefined],
  ])('%s → %s', (s, n) => {
    expect(parseSignal(s)).toBe(n);
  });
});
