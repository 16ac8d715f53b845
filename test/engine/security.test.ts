/**
 * Attacks a hostile container makes on its host, performed for real on this kernel. Each
 * is bounded in tries and time, and each was shown to succeed against the code before
 * its fix (see the README's Security model).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EngineError } from '../../src/sandbox/errors';
import { podSandboxSpec } from '../../src/oci/pod';
import type { Spec } from '../../src/oci/spec';
import { makeBundle } from './bundle';
import { Harness } from './harness';
import { waitUntil } from '../rig/rig';

const h = new Harness();
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbox-attack-'));
afterAll(async () => {
  await h.cleanup();
  fs.rmSync(scratch, { recursive: true, force: true });
});

function addCaps(s: Spec, ...caps: string[]): void {
  const c = s.process!.capabilities!;
  for (const set of ['bounding', 'effective', 'permitted'] as const) c[set] = [...(c[set] ?? []), ...caps];
}

async function createError(b: ReturnType<typeof makeBundle>): Promise<string> {
  const err = await h.create(b).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EngineError);
  return (err as Error).message;
}

/**
 * A container with CAP_SYS_PTRACE that scans its pid namespace until /stop appears: through
 * /proc/<pid>/root and cwd of every other process it tries to write into `hostDir`, which
 * only the host has; at the end it prints the binaries (/proc/<pid>/exe) it saw.
 */
function watcher(prefix: string, hostDir: string): { script: string; bundle: ReturnType<typeof makeBundle> } {
  const script = [
    `while [ ! -e /stop ]; do`,
    `  for d in /proc/[0-9]*; do`,
    `    [ "$d" = /proc/1 ] || [ "$d" = /proc/$$ ] && continue`,
    `    [ -d "$d/root${hostDir}" ] && echo escaped > "$d/root${hostDir}/pwned"`,
    `    [ -d "$d/cwd${hostDir}" ] && echo escaped > "$d/cwd${hostDir}/pwned-cwd"`,
    `    readlink "$d/exe" >> /tmp/exes 2>/dev/null`,
    `  done`,
    `done; sort -u /tmp/exes 2>/dev/null; exit 0`,
  ].join('\n');
  return { script, bundle: makeBundle(prefix, ['sh', '-c', script], (s) => addCaps(s, 'CAP_SYS_PTRACE', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH')) };
}

describe('a container process with CAP_SYS_PTRACE watching for new processes', () => {
  it('never reaches the host root, cwd or runtime binary through /proc/<pid> of an exec', async () => {
    const hostDir = fs.mkdtempSync(path.join(scratch, 'host-'));
    const b = watcher('ptrace', hostDir).bundle;
    await h.create(b);
    await h.engine.start(b.id);
    for (let i = 0; i < 60; i++) expect((await h.exec(b, ['true'])).status).toBe(0);
    fs.writeFileSync(path.join(b.dir, 'rootfs', 'stop'), '');
    expect(await h.engine.wait(b.id)).toBe(0);
    await h.engine.delete(b.id);
    expect(fs.readdirSync(hostDir)).toEqual([]);
    // What the attacker saw as other processes' binaries: never the file on the host.
    const exes = h.output(b).out.split('\n').filter(Boolean);
    expect(exes.filter((e) => e.includes('build/bin/tsbox-sandbox'))).toEqual([]);
  }, 60_000);
});

describe('a pod sharing one pid namespace', () => {
  it("never shows a new container's init to its siblings before it is inside its own root", async () => {
    const hostDir = fs.mkdtempSync(path.join(scratch, 'host-'));
    const { script: watch, bundle: pod } = watcher('podpid', hostDir);
    const podPid = await h.create(pod);
    await h.engine.start(pod.id);
    const uptime = path.join(scratch, 'uptime');
    fs.writeFileSync(uptime, '42.00 42.00\n');
    for (let i = 0; i < 20; i++) {
      // A sibling joining the pod's pid namespace; /proc is its pod's, with a file bound in.
      const b = makeBundle('sibling', ['sh', '-c', 'cat /proc/1/cmdline | tr "\\0" " "; echo; cat /proc/uptime'], (s) => {
        s.linux!.namespaces = s.linux!.namespaces!.map((ns) => (ns.type === 'pid' ? { type: 'pid', path: `/proc/${podPid}/ns/pid` } : ns));
        s.mounts!.push({ destination: '/proc/uptime', type: 'bind', source: uptime, options: ['bind', 'ro'] });
      });
      const r = await h.run(b);
      b.cleanup();
      expect(r).toMatchObject({ status: 0, out: `sh -c ${watch} \n42.00 42.00\n` });
    }
    fs.writeFileSync(path.join(pod.dir, 'rootfs', 'stop'), '');
    expect(await h.engine.wait(pod.id)).toBe(0);
    await h.engine.delete(pod.id);
    expect(fs.readdirSync(hostDir)).toEqual([]);
  }, 60_000);
});

describe('a container sharing a volume with a new one', () => {
  it("cannot steer the new container's mounts outside its rootfs by swapping a symlink", async () => {
    const vol = fs.mkdtempSync(path.join(scratch, 'vol-'));
    fs.mkdirSync(path.join(vol, 'a'));
    const outside = fs.mkdtempSync(path.join(scratch, 'outside-'));
    fs.symlinkSync(outside, path.join(vol, 'link'));
    // /vol/a is a directory and a symlink to a host directory in turn, swapped atomically.
    const attacker = makeBundle('swapper', ['/swap', '/vol/a', '/vol/link', '/vol/stop', '50'], (s) =>
      s.mounts!.push({ destination: '/vol', type: 'bind', source: vol, options: ['rbind'] }),
    );
    execFileSync('cc', ['-static', '-O2', '-o', path.join(attacker.dir, 'rootfs', 'swap'), path.join(__dirname, '..', 'tools', 'swap.c')]);
    await h.create(attacker);
    await h.engine.start(attacker.id);
    let created = 0;
    for (let i = 0; i < 40; i++) {
      const victim = makeBundle('victim', ['sh', '-c', 'grep -c " tsboxrace " /proc/self/mountinfo'], (s) => {
        s.mounts!.push({ destination: '/vol', type: 'bind', source: vol, options: ['rbind'] });
        s.mounts!.push({ destination: '/vol/a/t', type: 'tmpfs', source: 'tsboxrace' });
      });
      const r = await h.run(victim).catch((e: unknown) => e);
      victim.cleanup();
      // A create may fail when the path changes under it; a created container always has
      // its mount inside its own root, where it can see it.
      if (r instanceof Error) continue;
      created++;
      expect(r).toMatchObject({ status: 0, out: '1\n' });
      expect(fs.readdirSync(outside)).toEqual([]);
    }
    fs.writeFileSync(path.join(vol, 'stop'), '');
    expect(await h.engine.wait(attacker.id)).toBe(0);
    await h.engine.delete(attacker.id);
    expect(created).toBeGreaterThan(0);
  }, 90_000);
});

describe('mounts into /proc', () => {
  it('refuses a host directory as /proc', async () => {
    const b = makeBundle('proc-bind', ['true'], (s) => (s.mounts![0] = { destination: '/proc', type: 'bind', source: scratch, options: ['rbind'] }));
    expect(await createError(b)).toMatch(/mounts\[0\]\.destination: only a proc filesystem can be mounted at \/proc/);
  });

  it("refuses a bind over a sysctl file, so the runtime's sysctl write cannot be redirected", async () => {
    const fake = path.join(scratch, 'fake-ip-forward');
    fs.writeFileSync(fake, '');
    const b = makeBundle('proc-sysctl', ['true'], (s) => {
      s.mounts!.push({ destination: '/proc/sys/net/ipv4/ip_forward', type: 'bind', source: '/proc/sys/kernel/hostname', options: ['bind'] });
      s.linux!.sysctl = { 'net.ipv4.ip_forward': '1' };
    });
    expect(await createError(b)).toMatch(/inside \/proc, where only/);
  });

  it('refuses a destination that reaches /proc through a symlink in the image', async () => {
    const file = path.join(scratch, 'name');
    fs.writeFileSync(file, 'x');
    const b = makeBundle('proc-link', ['true'], (s) => s.mounts!.push({ destination: '/kernel/hostname', type: 'bind', source: file, options: ['bind'] }));
    fs.symlinkSync('/proc/sys/kernel', path.join(b.dir, 'rootfs', 'kernel'));
    expect(await createError(b)).toMatch(/\/kernel\/hostname resolves into \/proc/);
  });

  it("writes sysctls to the container's own kernel settings", async () => {
    const b = makeBundle(
      'sysctl',
      ['cat', '/proc/sys/net/ipv4/ip_forward', '/proc/sys/kernel/hostname'],
      (s) => (s.linux!.sysctl = { 'net.ipv4.ip_forward': '1' }),
    );
    const r = await h.run(b);
    expect(r.out).toBe(`1\n${b.id}\n`);
  });
});

describe('procfs and sysfs placed by the image', () => {
  it('refuses a /proc that is a symlink, so no mask can miss the real procfs', async () => {
    // The image points /proc elsewhere: procfs would be mounted at /x and every mask and
    // read-only path under /proc would find nothing there and be skipped.
    const b = makeBundle('proclink', ['sh', '-c', 'echo pwned > /x/sys/kernel/domainname && echo wrote'], (s) => {
      s.linux!.readonlyPaths = ['/proc/sys'];
    });
    fs.rmSync(path.join(b.dir, 'rootfs', 'proc'), { recursive: true, force: true });
    fs.mkdirSync(path.join(b.dir, 'rootfs', 'x'));
    fs.symlinkSync('/x', path.join(b.dir, 'rootfs', 'proc'));
    const r = await h.run(b).catch((e: unknown) => e);
    expect(r).toBeInstanceOf(EngineError);
    expect((r as Error).message).toMatch(/mounts\[0\] \(\/proc\): \/proc must be a plain directory for proc/);
  });
});

describe('capabilities', () => {
  it('drops every capability outside the bounding set, whatever /proc/sys/kernel/cap_last_cap says', async () => {
    // A container with CAP_SYS_ADMIN covers cap_last_cap with "0"; an exec must still get
    // only the spec's bounding set (the runtime once read that file inside the container).
    const b = makeBundle(
      'lastcap',
      ['sh', '-c', 'echo 0 > /tmp/zero && mount --bind /tmp/zero /proc/sys/kernel/cap_last_cap && touch /tmp/ready && sleep 60'],
      (s) => addCaps(s, 'CAP_SYS_ADMIN'),
    );
    await h.create(b);
    await h.engine.start(b.id);
    await waitUntil(() => fs.existsSync(path.join(b.dir, 'rootfs', 'tmp', 'ready')), 'the bind over cap_last_cap');
    const r = await h.exec(b, ['grep', 'CapBnd', '/proc/self/status']);
    // CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_SYS_ADMIN (21), CAP_AUDIT_WRITE (29).
    expect(r.out.trim()).toBe(`CapBnd:\t${((1 << 5) | (1 << 10) | (1 << 21) | (1 << 29)).toString(16).padStart(16, '0')}`);
    await h.engine.kill(b.id, 9);
    await h.engine.wait(b.id);
    await h.engine.delete(b.id);
  });
});

describe('masked paths', () => {
  it('are never covered with a /dev/null the image planted', async () => {
    // Without a /dev tmpfs, the image's /dev is used: its "null" is a symlink to a
    // writable procfs file. Bound over /proc/timer_list, that file would become writable.
    const b = makeBundle('devnull', ['sh', '-c', 'echo pwned > /proc/timer_list; hostname'], (s) => {
      s.mounts = s.mounts!.filter((m) => !m.destination.startsWith('/dev'));
      s.linux!.readonlyPaths = [];
    });
    const dev = path.join(b.dir, 'rootfs', 'dev');
    fs.rmSync(path.join(dev, 'null'), { force: true });
    fs.symlinkSync('/proc/sys/kernel/hostname', path.join(dev, 'null'));
    const r = await h.run(b).catch((e: unknown) => e);
    // Refused outright; had it run, its hostname would now read "pwned".
    expect(r).toBeInstanceOf(EngineError);
    expect((r as Error).message).toMatch(/\/dev\/null exists in the rootfs and is not the device/);
  });

  it('stay masked and read-only paths keep nosuid,nodev,noexec', async () => {
    const b = makeBundle(
      'masked',
      ['sh', '-c', 'wc -c < /proc/timer_list; ls /proc/irq | wc -l; grep " /proc/sys " /proc/self/mountinfo | cut -d" " -f6'],
      (s) => {
        s.linux!.maskedPaths = ['/proc/timer_list', '/proc/irq'];
        s.linux!.readonlyPaths = ['/proc/sys'];
        s.mounts![0].options = ['nosuid', 'noexec', 'nodev'];
      },
    );
    const r = await h.run(b);
    expect(r.err).toBe('');
    expect(r.out.split('\n').slice(0, 2)).toEqual(['0', '0']);
    expect(r.out.split('\n')[2].split(',').sort()).toEqual(['nodev', 'noexec', 'nosuid', 'relatime', 'ro']);
  });
});

describe('device nodes', () => {
  it("are limited to runc's defaults when the spec has no device rules at all", async () => {
    const b = makeBundle('nodevrules', ['sh', '-c', 'mknod /tmp/kmsg c 1 11 && echo made; echo x > /tmp/kmsg && echo wrote'], (s) => {
      addCaps(s, 'CAP_MKNOD');
      s.linux!.resources = undefined;
    });
    const r = await h.run(b);
    expect(r.out).toBe('made\n');
    expect(r.err).toMatch(/\/tmp\/kmsg: Operation not permitted/);
  });

  it('never wait on a FIFO the image put at /etc/passwd (an exec without HOME gets /)', async () => {
    const b = makeBundle('passwdfifo', ['sh', '-c', 'rm /etc/passwd && mkfifo /etc/passwd && touch /tmp/ready && sleep 60']);
    await h.create(b);
    await h.engine.start(b.id);
    await waitUntil(() => fs.existsSync(path.join(b.dir, 'rootfs', 'tmp', 'ready')), 'the FIFO at /etc/passwd');
    expect(await h.exec(b, ['sh', '-c', 'echo $HOME'], { env: ['PATH=/bin'] })).toEqual({ status: 0, out: '/\n' });
    await h.engine.kill(b.id, 9);
    await h.engine.wait(b.id);
    await h.engine.delete(b.id);
  });

  it('a container with CAP_MKNOD cannot use a node its rules do not allow, on v1 and on its unified cgroup', async () => {
    const b = makeBundle('mknod', ['sh', '-c', 'mknod /tmp/kmsg c 1 11 && echo made; echo x > /tmp/kmsg && echo wrote; grep "^0::" /proc/self/cgroup'], (s) =>
      addCaps(s, 'CAP_MKNOD'),
    );
    const r = await h.run(b);
    expect(r.out).toBe(`made\n0::/tsbox-test/${b.id}\n`);
    expect(r.err).toMatch(/\/tmp\/kmsg: Operation not permitted/);
  });
});

describe('LSM confinement', () => {
  it('refuses an AppArmor profile it cannot apply instead of running unconfined', async () => {
    const b = makeBundle('apparmor', ['true'], (s) => (s.process!.apparmorProfile = 'tsbox-no-such-profile'));
    expect(await createError(b)).toMatch(/process\.apparmorProfile: AppArmor profile tsbox-no-such-profile/);
  });
});

describe("a pod sandbox's own init (no pause image)", () => {
  it('shows a sibling with CAP_SYS_PTRACE no host path, root or descriptor, reaps orphans and ends on SIGTERM', async () => {
    // The pod as the shim's sandbox service makes it: its spec, an empty root, /dev/null stdio.
    const id = `podinit-${process.pid}`;
    const dir = fs.mkdtempSync(path.join(scratch, 'pod-'));
    fs.mkdirSync(path.join(dir, 'rootfs'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(podSandboxSpec(id, null, '')));
    const nul = fs.openSync('/dev/null', 'r+');
    const podPid = (await h.engine.create(id, dir, { stdio: [nul, nul, nul], pause: true })).pid;
    fs.closeSync(nul);
    await h.engine.start(id);
    expect(fs.readFileSync(`/proc/${podPid}/cmdline`, 'utf8').replace(/\0+$/, '')).toBe('/pause');
    expect(fs.readFileSync(`/proc/${podPid}/comm`, 'utf8')).toBe('pause\n');
    // Everything it could have inherited from tsbox-sandbox, looked for from inside the pod.
    const hostDir = fs.mkdtempSync(path.join(scratch, 'host-'));
    const look = [
      `ls -A /proc/1/root/ /proc/1/cwd/`,
      `for f in /proc/1/fd/*; do readlink $f; done`,
      `tr "\\0" " " < /proc/1/cmdline | tr -s " "; echo`,
      `tr -d "\\0" < /proc/1/environ | wc -c`,
      `[ -d /proc/1/root${hostDir} ] && echo escaped > /proc/1/root${hostDir}/pwned`,
      `(sleep 1000 &); exit 0`,
    ].join('; ');
    const sibling = makeBundle('podsibling', ['sh', '-c', look], (s) => {
      addCaps(s, 'CAP_SYS_PTRACE', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH');
      s.linux!.namespaces = s.linux!.namespaces!.map((ns) => (ns.type === 'pid' ? { type: 'pid', path: `/proc/${podPid}/ns/pid` } : ns));
    });
    await h.create(sibling);
    await h.engine.start(sibling.id);
    expect(await h.engine.wait(sibling.id)).toBe(0);
    // Its root and cwd are its own root (an empty directory with its /proc and /dev), its
    // descriptors /dev/null, its environment (tsbox-sandbox's, the host's) empty.
    expect(h.output(sibling).out).toBe('/proc/1/cwd/:\ndev\nproc\n\n/proc/1/root/:\ndev\nproc\n/dev/null\n/dev/null\n/dev/null\n/pause \n0\n');
    expect(fs.readdirSync(hostDir)).toEqual([]);
    // The sibling's background sleep was orphaned to the pod's init; killed, it is reaped.
    const children = () => fs.readFileSync(`/proc/${podPid}/task/${podPid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number);
    const [orphan] = children();
    expect(fs.readFileSync(`/proc/${orphan}/cmdline`, 'utf8')).toBe('sleep\u00001000\u0000');
    process.kill(orphan, 'SIGKILL');
    await waitUntil(() => !children().includes(orphan), 'the pod init reaps the orphan');
    await h.engine.delete(sibling.id, true);
    await h.engine.kill(id, 15);
    expect(await h.engine.wait(id)).toBe(0);
    await h.engine.delete(id);
  });
});
