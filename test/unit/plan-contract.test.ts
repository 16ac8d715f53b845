/**
 * The plan is the contract between the TypeScript `spec → plan` layer and tsbox-sandbox:
 * every field of the TypeScript types (the literals below must name each one, or they do
 * not compile) goes through `tsbox-sandbox --echo-plan` and must come back unchanged. A
 * field the Rust side lacks, or names differently, fails here instead of being dropped.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import type { ContainerPlan, ExecPlan, ProcessPlan } from '../../src/oci/plan';

const SANDBOX = path.resolve(__dirname, '../../build/bin/tsbox-sandbox');

function echo(kind: 'container' | 'exec', plan: unknown): { status: number | null; out: unknown; err: string } {
  const r = spawnSync(SANDBOX, ['--echo-plan', kind], { input: JSON.stringify(plan), encoding: 'utf8' });
  return { status: r.status, out: r.status === 0 ? (JSON.parse(r.stdout) as unknown) : undefined, err: r.stderr };
}

const process: ProcessPlan = {
  args: ['sh', '-c', 'true'],
  env: ['PATH=/bin'],
  cwd: '/work',
  uid: 1000,
  gid: 1001,
  additionalGids: [5, 6],
  umask: 0o22,
  rlimits: [{ resource: 7, soft: 1024, hard: null, field: 'process.rlimits[0]' }],
  capabilities: { bounding: 2 ** 39 + 1, effective: 2, inheritable: 4, permitted: 8, ambient: 16 },
  noNewPrivileges: true,
  terminal: true,
  consoleSize: [24, 80],
  seccomp: {
    defaultAction: { kind: 'errno', value: 38 },
    architectures: ['SCMP_ARCH_X86_64'],
    rules: [
      {
        names: ['chmod'],
        action: { kind: 'allow', value: null },
        args: [{ index: 1, value: 7, valueTwo: 5, op: 'masked_eq' }],
        field: 'linux.seccomp.syscalls[0]',
      },
    ],
  },
  apparmorProfile: 'tsbox-default',
};

const container: ContainerPlan = {
  rootfs: '/b/rootfs',
  rootfsReadonly: true,
  rootfsPropagation: 0x40000,
  cloneFlags: 0x20000,
  unshareCgroupNs: true,
  joinNamespaces: [{ flag: 0x40000000, path: '/proc/1/ns/net', field: 'linux.namespaces[1] (network)' }],
  uidMappings: [{ containerId: 0, hostId: 100000, size: 65536 }],
  gidMappings: [{ containerId: 0, hostId: 200000, size: 65536 }],
  hostname: 'h',
  domainname: 'd',
  mounts: [
    {
      source: '/x',
      destination: '/d',
      fstype: 'tmpfs',
      flags: 6,
      data: 'size=64k',
      propagation: 0x100000,
      bind: true,
      remount: true,
      recursiveSet: 1,
      recursiveClear: 2,
      field: 'mounts[0] (/d)',
    },
  ],
  devices: [{ path: '/dev/fuse', fileType: 0o020000, major: 10, minor: 229, mode: 0o666, uid: 1, gid: 2, field: 'linux.devices[0]' }],
  bindDevices: true,
  symlinks: [{ target: '/proc/self/fd', link: '/dev/fd' }],
  maskedPaths: ['/proc/kcore'],
  readonlyPaths: ['/proc/sys'],
  sysctls: [{ key: 'net.ipv4.ip_forward', value: '1' }],
  oomScoreAdj: 500,
  cgroupProcs: ['/sys/fs/cgroup/c/cgroup.procs'],
  oomWatch: [2, '/sys/fs/cgroup/c'],
  pauseForHooks: true,
  setupDeadline: 5,
  hooks: {
    createContainer: [{ path: '/bin/hook', args: ['hook', 'a'], env: ['A=1'], timeout: 3, field: 'hooks.createContainer[0]' }],
    startContainer: [{ path: '/bin/hook2', args: [], env: [], timeout: null, field: 'hooks.startContainer[0]' }],
  },
  hookState: { ociVersion: '1.0.2', id: 'c1', status: 'creating', bundle: '/b', annotations: { a: 'b' } },
  process,
  pause: true,
};

describe('the plan contract with tsbox-sandbox', () => {
  it('carries every field of a container plan and of an exec plan unchanged', () => {
    expect(echo('container', container)).toEqual({ status: 0, out: container, err: '' });
    const exec: ExecPlan = { cgroupProcs: ['/sys/fs/cgroup/c/cgroup.procs'], process: { ...process, terminal: false } };
    expect(echo('exec', exec)).toEqual({ status: 0, out: exec, err: '' });
  });

  it('refuses a field tsbox-sandbox does not know, and one it needs that is missing', () => {
    const extra = echo('container', { ...container, process: { ...process, newThing: 1 } });
    expect(extra.status).toBe(1);
    expect(extra.err).toMatch(/unknown field `newThing`/);
    const noCwd: Partial<ProcessPlan> = { ...process };
    delete noCwd.cwd;
    expect(echo('exec', { cgroupProcs: [], process: noCwd }).err).toMatch(/missing field `cwd`/);
  });
});
