/**
 * Bundles for engine tests: a private copy of the rig's busybox rootfs and a config.json
 * shaped like `runc spec`'s default (what most real specs start from), with overrides.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import type { Spec } from '../../src/oci/spec';

export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');
export const BUSYBOX_ROOTFS = path.join(PROJECT_ROOT, 'build', 'images', 'busybox-rootfs');

export function uniqueId(prefix: string): string {
  return `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
}

export function defaultSpec(id: string, args: string[]): Spec {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args,
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'],
      cwd: '/',
      capabilities: {
        bounding: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],
        effective: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],
        permitted: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],
        ambient: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: false },
    hostname: id,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux: {
      cgroupsPath: `/tsbox-test/${id}`,
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: [
        '/proc/acpi',
        '/proc/asound',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/sys/firmware',
        '/proc/scsi',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

export interface Bundle {
  id: string;
  dir: string;
  spec: Spec;
  /** Rewrites config.json after the spec was changed. */
  save(): void;
  cleanup(): void;
}

export function makeBundle(prefix: string, args: string[], edit?: (spec: Spec) => void): Bundle {
  const id = uniqueId(prefix);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tsbox-bundle-${id}-`));
  execFileSync('cp', ['-a', BUSYBOX_ROOTFS, path.join(dir, 'rootfs')]);
  const spec = defaultSpec(id, args);
  edit?.(spec);
  const b: Bundle = {
    id,
    dir,
    spec,
    save: () => fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(b.spec, null, 2)),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
  b.save();
  return b;
}
