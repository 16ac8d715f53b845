/** What a process sees inside a tsbox container, on the real kernel. */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { native } from '../../src/native/addon';
import type { Spec } from '../../src/oci/spec';
import { makeBundle } from './bundle';
import { cgroupExists, cgroupProcs, cgroupV2, cpuWeight, memoryLimit } from '../cgroupfs';
import { Harness } from './harness';
import { waitUntil } from '../rig/rig';

const h = new Harness();
afterAll(() => h.cleanup());

/** Fields of /proc/self/status as the container printed them. */
function status(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split('\n')
      .filter((l) => l.includes(':'))
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
  );
}

describe('a container from an OCI bundle', () => {
  it('runs the process as pid 1 with the spec hostname and passes on its exit status', async () => {
    const b = makeBundle('basic', ['sh', '-c', 'echo pid=$$ host=$(hostname); exit 7']);
    expect(await h.run(b)).toEqual({ status: 7, out: `pid=1 host=${b.id}\n`, err: '' });
  });

  it('applies capabilities, no_new_privs and the seccomp mode', async () => {
    const b = makeBundle('caps', ['cat', '/proc/self/status'], (s) => {
      s.linux!.seccomp = {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64'],
        syscalls: [{ names: ['mkdirat', 'mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
      };
    });
    const r = await h.run(b);
    const st = status(r.out);
    // CAP_KILL (5), CAP_NET_BIND_SERVICE (10), CAP_AUDIT_WRITE (29) as in the default spec
    const mask = ((1 << 5) | (1 << 10) | (1 << 29)).toString(16).padStart(16, '0');
    expect({ CapBnd: st.CapBnd, CapEff: st.CapEff, CapPrm: st.CapPrm, CapInh: st.CapInh }).toEqual({
      CapBnd: mask,
      CapEff: mask,
      CapPrm: mask,
      CapInh: '0000000000000000',
    });
    expect(st.NoNewPrivs).toBe('1');
    expect(st.Seccomp).toBe('2');
  });

  it('makes a syscall the seccomp profile denies fail with the profile errno', async () => {
    const b = makeBundle('seccomp', ['sh', '-c', 'mkdir /tmp/x; echo mkdir=$?; touch /tmp/y && echo touch=ok'], (s) => {
      s.linux!.seccomp = {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
        syscalls: [{ names: ['mkdir', 'mkdirat', 'no_such_syscall'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 }],
      };
    });
    const r = await h.run(b);
    expect(r.err).toMatch(/mkdir: can't create directory '\/tmp\/x': Permission denied/);
    expect(r.out).toBe('mkdir=1\ntouch=ok\n');
  });

  it('needs no syscall of the runtime in the profile of a process without no_new_privs', async () => {
    // Without no_new_privs the filter is loaded while tsbox still holds CAP_SYS_ADMIN, i.e.
    // before the cwd and HOME lookups; a profile made for runc (no openat2) must still run.
    const b = makeBundle('noopenat2', ['sh', '-c', 'pwd; echo $HOME; exec sleep 30'], (s) => {
      s.process!.noNewPrivileges = false;
      s.process!.cwd = '/tmp';
      s.process!.env = s.process!.env!.filter((e) => !e.startsWith('HOME='));
      s.linux!.seccomp = {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64'],
        syscalls: [{ names: ['openat2'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
      };
    });
    await h.create(b);
    await h.engine.start(b.id);
    expect(await h.exec(b, ['sh', '-c', 'pwd; echo $HOME'], { cwd: '/etc', env: ['PATH=/bin'] })).toEqual({ status: 0, out: '/etc\n/root\n' });
    await h.engine.kill(b.id, 9);
    expect(await h.engine.wait(b.id)).toBe(137);
    await h.engine.delete(b.id);
    expect(h.output(b)).toEqual({ out: '/tmp\n/root\n', err: '' });
  });

  it('enters a cwd its user could not, as runc does (the chdir happens before the user switch)', async () => {
    const b = makeBundle('rootcwd', ['pwd'], (s) => {
      s.process!.user = { uid: 1000, gid: 1000 };
      s.process!.cwd = '/root';
    });
    fs.chmodSync(path.join(b.dir, 'rootfs', 'root'), 0o700);
    expect(await h.run(b)).toMatchObject({ status: 0, out: '/root\n' });
  });

  it('compares masked arguments like runc (value is the mask, valueTwo the datum)', async () => {
    // Deny chmod only when others get exactly r-x: (mode & 07) == 05.
    const b = makeBundle('maskedeq', ['sh', '-c', 'touch /tmp/f; chmod 757 /tmp/f && echo ok; chmod 755 /tmp/f; echo no=$?'], (s) => {
      s.linux!.seccomp = {
        defaultAction: 'SCMP_ACT_ALLOW',
        architectures: ['SCMP_ARCH_X86_64'],
        syscalls: [
          { names: ['chmod'], action: 'SCMP_ACT_ERRNO', errnoRet: 1, args: [{ index: 1, value: 0o7, valueTwo: 0o5, op: 'SCMP_CMP_MASKED_EQ' }] },
          { names: ['fchmodat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1, args: [{ index: 2, value: 0o7, valueTwo: 0o5, op: 'SCMP_CMP_MASKED_EQ' }] },
        ],
      };
    });
    const r = await h.run(b);
    expect(r.out).toBe('ok\nno=1\n');
    expect(r.err).toMatch(/Operation not permitted/);
  });

  it('writes sysctls even though /proc/sys is read-only for the process', async () => {
    const b = makeBundle(
      'sysctl',
      ['sh', '-c', 'cat /proc/sys/net/ipv4/ip_unprivileged_port_start; echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo ro'],
      (s) => {
        s.linux!.sysctl = { 'net.ipv4.ip_unprivileged_port_start': '80' };
      },
    );
    expect((await h.run(b)).out).toBe('80\nro\n');
  });

  it('runs as the spec user with its groups and umask', async () => {
    const b = makeBundle('user', ['sh', '-c', 'id; umask; touch /tmp/f; stat -c %a /tmp/f'], (s) => {
      s.process!.user = { uid: 1000, gid: 1000, additionalGids: [10, 20], umask: 0o027 };
    });
    const r = await h.run(b);
    expect(r.out).toBe('uid=1000(app) gid=1000(app) groups=10,20\n0027\n640\n');
  });

  it("gives a process without HOME its user's home from the container's /etc/passwd, else /", async () => {
    const env = ['PATH=/bin'];
    const root = makeBundle('home', ['sh', '-c', 'echo $HOME; readlink /dev/core'], (s) => (s.process!.env = env));
    // /dev/core too, where the kernel has /proc/kcore (runc's rule).
    expect((await h.run(root)).out).toBe(`/root\n${fs.existsSync('/proc/kcore') ? '/proc/kcore\n' : ''}`);
    const app = makeBundle('home-app', ['sh', '-c', 'echo $HOME'], (s) => {
      s.process!.env = env;
      s.process!.user = { uid: 1000, gid: 1000 };
    });
    expect((await h.run(app)).out).toBe('/home/app\n');
    const unknown = makeBundle('home-none', ['sh', '-c', 'echo $HOME'], (s) => {
      s.process!.env = [...env, 'X=1'];
      s.process!.user = { uid: 4242, gid: 4242 };
    });
    expect((await h.run(unknown)).out).toBe('/\n');
    const given = makeBundle('home-given', ['sh', '-c', 'echo $HOME'], (s) => (s.process!.env = [...env, 'HOME=/srv']));
    expect((await h.run(given)).out).toBe('/srv\n');
  });

  it('sets rlimits', async () => {
    const b = makeBundle('rlimit', ['sh', '-c', 'ulimit -n; ulimit -s; ulimit -Hn'], (s) => {
      s.process!.rlimits = [
        { type: 'RLIMIT_NOFILE', soft: 321, hard: 654 },
        { type: 'RLIMIT_STACK', soft: 4096 * 1024, hard: 4096 * 1024 },
      ];
    });
    expect((await h.run(b)).out).toBe('321\n4096\n654\n');
  });

  it('mounts what the spec lists and nothing of the host', async () => {
    const b = makeBundle('mounts', ['sh', '-c', 'cat /proc/mounts'], (s) => {
      s.mounts!.push({ destination: '/data', type: 'bind', source: path.join(s.root!.path, '..', 'data'), options: ['rbind', 'ro'] });
    });
    fs.mkdirSync(path.join(b.dir, 'data'));
    b.spec.mounts![b.spec.mounts!.length - 1].source = path.join(b.dir, 'data');
    b.save();
    const mounts = (await h.run(b)).out
      .trim()
      .split('\n')
      .map((l) => l.split(' '))
      .map(([, target, type, opts]) => ({ target, type, ro: opts.split(',')[0] === 'ro' }));
    const byTarget = Object.fromEntries(mounts.map((m) => [m.target, m]));
    expect(byTarget['/proc']).toMatchObject({ type: 'proc', ro: false });
    expect(byTarget['/dev']).toMatchObject({ type: 'tmpfs' });
    expect(byTarget['/dev/pts']).toMatchObject({ type: 'devpts' });
    expect(byTarget['/dev/shm']).toMatchObject({ type: 'tmpfs' });
    expect(byTarget['/dev/mqueue']).toMatchObject({ type: 'mqueue' });
    expect(byTarget['/sys']).toMatchObject({ type: 'sysfs', ro: true });
    expect(byTarget['/data']).toMatchObject({ ro: true });
    expect(byTarget['/proc/sys']).toMatchObject({ ro: true }); // readonlyPaths
    expect(mounts.some((m) => m.target.startsWith('/work') || m.target.startsWith('/tmp/tsbox'))).toBe(false);
  });

  it('honours a shared rootfs propagation', async () => {
    const b = makeBundle('shared', ['sh', '-c', 'cat /proc/self/mountinfo'], (s) => {
      s.linux!.rootfsPropagation = 'shared';
    });
    const r = await h.run(b);
    expect(r.status).toBe(0);
    const root = r.out.split('\n').find((l) => l.split(' ')[4] === '/');
    expect(root).toMatch(/ shared:\d+ /);
  });

  it('populates /dev with the default devices and links, and honours masked paths', async () => {
    const b = makeBundle(
      'dev',
      ['sh', '-c', 'ls -l /dev | grep -v total; wc -c < /proc/keys; ls /sys/firmware | wc -l; echo x > /proc/sys/kernel/domainname || echo ro'],
      (s) => {
        s.linux!.devices = [{ path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o600 }];
      },
    );
    const r = await h.run(b);
    const lines = r.out.trim().split('\n');
    const devs = Object.fromEntries(
      lines
        .filter((l) => /^[cl]/.test(l))
        .map((l) => l.split(/\s+/))
        .map((f) => [f[f[0].startsWith('l') ? f.length - 3 : f.length - 1], f[0][0] === 'c' ? `${f[0]} ${f[4]}${f[5]}` : `-> ${f[f.length - 1]}`]),
    );
    expect(devs).toMatchObject({
      null: 'crw-rw-rw- 1,3',
      zero: 'crw-rw-rw- 1,5',
      full: 'crw-rw-rw- 1,7',
      random: 'crw-rw-rw- 1,8',
      urandom: 'crw-rw-rw- 1,9',
      tty: 'crw-rw-rw- 5,0',
      fuse: 'crw------- 10,229',
      fd: '-> /proc/self/fd',
      stdin: '-> /proc/self/fd/0',
      ptmx: '-> pts/ptmx',
    });
    // masked: /proc/keys reads as empty, /sys/firmware is an empty tmpfs; /proc/sys is read-only
    expect(lines.slice(-3)).toEqual(['0', '0', 'ro']);
    expect(r.err).toMatch(/Read-only file system/);
  });

  it('maps ids in a new user namespace', async () => {
    const b = makeBundle('userns', ['sh', '-c', 'cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /tmp/owned'], (s) => {
      s.linux!.namespaces!.push({ type: 'user' });
      s.linux!.uidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
      s.linux!.gidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
    });
    // The mapped root must be able to reach its rootfs, as with runc.
    fs.chmodSync(b.dir, 0o755);
    const r = await h.run(b);
    expect(r.out.split('\n').map((l) => l.trim().split(/\s+/).join(' '))).toEqual(['0 200000 65536', '0 200000 65536', '0', '']);
    // A file the container's root made belongs to the mapped host uid.
    expect(fs.statSync(path.join(b.dir, 'rootfs', 'tmp', 'owned')).uid).toBe(200000);
  });

  it('makes a bind read-only with its submounts for "rro", only the top mount for "ro"', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbox-rro-'));
    fs.mkdirSync(path.join(dir, 'sub'));
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', path.join(dir, 'sub')]);
    try {
      const probe = ['sh', '-c', 'for d in /r /r/sub /o /o/sub; do touch $d/f 2>/dev/null && echo "$d rw" || echo "$d ro"; done'];
      const b = makeBundle('rro', probe, (s) => {
        s.mounts!.push({ destination: '/r', type: 'bind', source: dir, options: ['rbind', 'rro'] });
        s.mounts!.push({ destination: '/o', type: 'bind', source: dir, options: ['rbind', 'ro'] });
      });
      expect((await h.run(b)).out).toBe('/r ro\n/r/sub ro\n/o ro\n/o/sub rw\n');
    } finally {
      execFileSync('umount', [path.join(dir, 'sub')]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('propagates mounts both ways through an rshared bind with rshared root propagation', async () => {
    // A shared host mount, as kubelet's pod volumes with Bidirectional propagation are.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbox-rshared-'));
    fs.mkdirSync(path.join(dir, 'from-host'));
    fs.mkdirSync(path.join(dir, 'from-container'));
    execFileSync('mount', ['--bind', dir, dir]);
    execFileSync('mount', ['--make-shared', dir]);
    try {
      const b = makeBundle(
        'rshared',
        ['sh', '-c', 'mount -t tmpfs tsboxprop /vol/from-container && while [ ! -e /vol/from-host/seen ]; do sleep 0.05; done; echo saw-host-mount'],
        (s) => {
          s.linux!.rootfsPropagation = 'rshared';
          s.mounts!.push({ destination: '/vol', type: 'bind', source: dir, options: ['rbind', 'rshared'] });
          const c = s.process!.capabilities!;
          for (const set of ['bounding', 'effective', 'permitted'] as const) c[set] = [...(c[set] ?? []), 'CAP_SYS_ADMIN'];
        },
      );
      await h.create(b);
      await h.engine.start(b.id);
      const inHost = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(' tsboxprop ');
      await waitUntil(inHost, "the container's mount to reach the host");
      execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', path.join(dir, 'from-host')]);
      fs.writeFileSync(path.join(dir, 'from-host', 'seen'), '');
      expect(await h.engine.wait(b.id)).toBe(0);
      await h.engine.delete(b.id);
      expect(h.output(b).out).toBe('saw-host-mount\n');
    } finally {
      execFileSync('umount', ['-R', dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("joins another container's user namespace by path, creating its other namespaces inside it", async () => {
    const userns = (s: Spec) => {
      s.linux!.uidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
      s.linux!.gidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
    };
    const a = makeBundle('usernsowner', ['sleep', '60'], (s) => {
      s.linux!.namespaces!.push({ type: 'user' });
      userns(s);
    });
    fs.chmodSync(a.dir, 0o755);
    const aPid = await h.create(a);
    await h.engine.start(a.id);
    const b = makeBundle('usernsjoin', ['sh', '-c', 'cat /proc/self/uid_map; hostname; touch /tmp/owned; readlink /proc/self/ns/user'], (s) => {
      s.linux!.namespaces!.push({ type: 'user', path: `/proc/${aPid}/ns/user` });
    });
    fs.chmodSync(b.dir, 0o755);
    const r = await h.run(b);
    expect(r.err).toBe('');
    expect(r.out.split('\n').map((l) => l.trim().split(/\s+/).join(' '))).toEqual(['0 200000 65536', b.id, fs.readlinkSync(`/proc/${aPid}/ns/user`), '']);
    expect(fs.statSync(path.join(b.dir, 'rootfs', 'tmp', 'owned')).uid).toBe(200000);
    await h.engine.kill(a.id, 9);
    expect(await h.engine.wait(a.id)).toBe(137);
    await h.engine.delete(a.id);
  });

  it("joins another container's network, ipc and uts namespaces by path", async () => {
    const a = makeBundle('nsowner', ['sleep', '60']);
    const aPid = await h.create(a);
    await h.engine.start(a.id);
    const b = makeBundle('nsjoin', ['sh', '-c', 'hostname; for n in net ipc uts; do readlink /proc/self/ns/$n; done'], (s) => {
      s.hostname = undefined;
      s.linux!.namespaces = s.linux!.namespaces!.map((ns) =>
        ['network', 'ipc', 'uts'].includes(ns.type) ? { type: ns.type, path: `/proc/${aPid}/ns/${ns.type === 'network' ? 'net' : ns.type}` } : ns,
      );
    });
    const r = await h.run(b);
    const expected = ['net', 'ipc', 'uts'].map((n) => fs.readlinkSync(`/proc/${aPid}/ns/${n}`));
    expect(r.out.trim().split('\n')).toEqual([a.id, ...expected]);
    await h.engine.kill(a.id, 9);
    expect(await h.engine.wait(a.id)).toBe(137);
    await h.engine.delete(a.id);
  });

  it('places the init in its cgroup with the memory and pids limits, and shows them through a cgroup mount', async () => {
    // Inside: the limits through the container's cgroup mount, and how many hierarchies name
    // its cgroup (v1: each controller's; v2: the one).
    const inside = cgroupV2 ? '/sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max' : '/sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max';
    const b = makeBundle('cgroup', ['sh', '-c', `cat ${inside}; cat /proc/self/cgroup | grep -c tsbox-test`], (s) => {
      s.linux!.resources = { ...s.linux!.resources, memory: { limit: 64 * 1024 * 1024 }, pids: { limit: 20 }, cpu: { shares: 512 } };
      s.mounts!.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] });
    });
    await h.create(b);
    const rel = `tsbox-test/${b.id}`;
    expect(memoryLimit(rel)).toBe(String(64 * 1024 * 1024));
    expect(cpuWeight(rel)).toBe(cgroupV2 ? '20' : '512');
    const pid = (await h.engine.ociState(b.id)).pid!;
    expect(cgroupProcs(rel)).toBe(String(pid));
    await h.engine.start(b.id);
    expect(await h.engine.wait(b.id)).toBe(0);
    await h.engine.delete(b.id);
    const out = h.output(b).out.trim().split('\n');
    expect(out.slice(0, 2)).toEqual([String(64 * 1024 * 1024), '20']);
    if (cgroupV2) expect(out[2]).toBe('1');
    else expect(Number(out[2])).toBeGreaterThan(5);
    expect(cgroupExists(rel)).toBe(false);
  });

  it('stops a fork bomb at the pids limit', async () => {
    const b = makeBundle('pids', ['sh', '-c', 'for i in $(seq 1 30); do sleep 5 & echo $i; done'], (s) => {
      s.linux!.resources = { ...s.linux!.resources, pids: { limit: 10 } };
    });
    const r = await h.run(b);
    // The shell counts itself: at most 9 sleeps fit under pids.max=10, then fork fails.
    const started = r.out.trim().split('\n').map(Number);
    expect(Math.max(...started)).toBeLessThanOrEqual(9);
    expect(started.length).toBeGreaterThanOrEqual(5);
    expect(r.err).toMatch(/can't fork: Resource temporarily unavailable/);
    expect(r.status).toBe(2);
  });

  it('reports 137 for a container killed with SIGKILL', async () => {
    const b = makeBundle('kill', ['sleep', '60']);
    await h.create(b);
    await h.engine.start(b.id);
    expect((await h.engine.ociState(b.id)).status).toBe('running');
    await h.engine.kill(b.id, 9);
    expect(await h.engine.wait(b.id)).toBe(137);
    expect((await h.engine.ociState(b.id)).status).toBe('stopped');
    await h.engine.delete(b.id);
  });

  it('reports to a late watcher the exit of an init killed before anyone watched', async () => {
    const b = makeBundle('late-watch', ['sleep', '60']);
    const pid = await h.create(b);
    process.kill(pid, 'SIGKILL');
    expect(await h.engine.wait(b.id)).toBe(137);
    const conn = h.engine.watch(b.id);
    try {
      const ev = await new Promise((resolve) => conn.on('exit', resolve));
      expect(ev).toEqual({ container: b.id, exec: null, pid, status: 137 });
    } finally {
      conn.close();
    }
    await h.engine.delete(b.id);
  });

  it("runs execs in the container, with the container's view and their own exit codes", async () => {
    const b = makeBundle('exec', ['sleep', '60']);
    await h.create(b);
    await h.engine.start(b.id);
    const r = await h.exec(b, ['sh', '-c', 'hostname; cat /proc/1/cmdline | tr "\\0" " "; echo; echo $$; exit 3']);
    expect(r.status).toBe(3);
    const [host, init, pid] = r.out.split('\n');
    expect([host, init]).toEqual([b.id, 'sleep 60 ']);
    expect(Number(pid)).toBeGreaterThan(1); // a pid of the container's namespace, not the host's
    const who = await h.exec(b, ['id'], { user: { uid: 65534, gid: 65534 } });
    expect(who).toEqual({ status: 0, out: 'uid=65534(nobody) gid=65534(nogroup)\n' });
    // Born in the container's cgroups (cloned into it on a v2 host, moved there on v1).
    const cg = await h.exec(b, ['sh', '-c', 'cat /proc/self/cgroup; echo --; cat /proc/1/cgroup']);
    const [mine, init1] = cg.out.split('--\n');
    expect(mine.trim()).toBe(init1.trim());
    expect(mine).toContain(cgroupV2 ? '0::' : ':memory:');
    await h.engine.kill(b.id, 9);
    await h.engine.wait(b.id);
    await h.engine.delete(b.id);
  });

  it('runs an exec under a pty', async () => {
    const b = makeBundle('exectty', ['sleep', '60']);
    await h.create(b);
    await h.engine.start(b.id);
    const [mine, theirs] = native.socketpair();
    const proc = { ...b.spec.process!, args: ['sh', '-c', 'tty; stty size'], terminal: true, consoleSize: { height: 30, width: 100 } };
    const started = await h.engine.exec(b.id, proc, { stdio: [theirs] });
    fs.closeSync(theirs);
    const master = native.recvFd(mine);
    fs.closeSync(mine);
    const code = await h.engine.waitExec(b.id, started.execId, started.conn);
    started.conn.close();
    const buf = Buffer.alloc(4096);
    const n = fs.readSync(master, buf);
    fs.closeSync(master);
    expect(code).toBe(0);
    // The pty belongs to the container's devpts, as with runc.
    expect(buf.subarray(0, n).toString().split('\r\n').slice(0, 2)).toEqual(['/dev/pts/0', '30 100']);
    await h.engine.kill(b.id, 9);
    await h.engine.wait(b.id);
    await h.engine.delete(b.id);
  });

  it('runs every hook in order with the state on stdin', async () => {
    const b = makeBundle('hooks', ['true']);
    const log = path.join(b.dir, 'rootfs', 'tmp', 'hooks.log');
    const host = (name: string) => ({ path: '/bin/sh', args: ['sh', '-c', `read -r s; echo "${name} $s" >> ${log}`] });
    b.spec.hooks = {
      prestart: [host('prestart')],
      createRuntime: [host('createRuntime')],
      createContainer: [host('createContainer')],
      // startContainer runs inside the container: its paths are the container's
      startContainer: [{ path: '/bin/sh', args: ['sh', '-c', 'read -r s; echo "startContainer $s" >> /tmp/hooks.log'] }],
      poststart: [host('poststart')],
      poststop: [host('poststop')],
    };
    b.save();
    const r = await h.run(b);
    expect(r.status).toBe(0);
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
    expect(lines.map((l) => l.split(' ')[0])).toEqual(['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop']);
    for (const l of lines) {
      const state = JSON.parse(l.slice(l.indexOf(' ') + 1)) as { pid?: number };
      expect(state).toMatchObject({ id: b.id, bundle: b.dir, ociVersion: '1.0.2' });
      // A stopped container has no pid (runc gives poststop none either).
      if (l.startsWith('poststop')) expect(state.pid).toBeUndefined();
      else expect(state.pid).toBeGreaterThan(1);
    }
    expect((JSON.parse(lines[5].slice(9)) as { status: string }).status).toBe('stopped');
  });

  it('keeps metadata a new engine can read, and marks a container whose sandbox died as stopped', async () => {
    const b = makeBundle('meta', ['sleep', '60']);
    await h.create(b);
    await h.engine.start(b.id);
    const { Engine } = await import('../../src/sandbox/engine');
    const other = new Engine({ root: h.root });
    const st = await other.ociState(b.id);
    expect(st).toMatchObject({ id: b.id, status: 'running', bundle: b.dir });
    const rec = other.store.read(b.id);
    process.kill(rec.sandboxPid, 'SIGKILL');
    process.kill(rec.pid, 'SIGKILL');
    // The sandbox is gone (or a zombie of ours for an instant): either way it is stopped.
    await new Promise<void>((resolve) => {
      const check = () =>
        fs.existsSync(`/proc/${rec.sandboxPid}/stat`) && !fs.readFileSync(`/proc/${rec.sandboxPid}/stat`, 'utf8').includes(') Z')
          ? setImmediate(check)
          : resolve();
      check();
    });
    expect((await other.ociState(b.id)).status).toBe('stopped');
    await other.delete(b.id);
    expect(fs.existsSync(path.join(h.root, b.id))).toBe(false);
  });
});
