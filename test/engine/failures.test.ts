/**
 * Bad input: a clear error naming the step, errno and spec field, and nothing left
 * behind — no mount, cgroup, sandbox process or state directory.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/sandbox/engine';
import { EngineError } from '../../src/sandbox/errors';
import { makeBundle, Bundle } from './bundle';
import { footprint, Harness } from './harness';

const h = new Harness();
afterAll(() => h.cleanup());

async function expectCleanFailure(b: Bundle, message: RegExp): Promise<EngineError> {
  h.track(b);
  const before = footprint(h.root, b.id);
  const err = await h.create(b).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EngineError);
  expect((err as Error).message).toMatch(message);
  const after = footprint(h.root, b.id);
  expect(after).toEqual({ mounts: before.mounts, sandboxes: [], cgroup: false, dirExists: false });
  return err as EngineError;
}

describe('a create that fails', () => {
  it('refuses an id that would escape the state root', async () => {
    const err = await h.engine.create('../x', '/nonexistent').catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'InvalidArgument' });
    expect((err as Error).message).toMatch(/invalid container id "\.\.\/x"/);
    expect(fs.existsSync(path.join(h.root, '..', 'x'))).toBe(false);
  });

  it('names a missing rootfs', async () => {
    const b = makeBundle('norootfs', ['true']);
    fs.rmSync(path.join(b.dir, 'rootfs'), { recursive: true });
    const err = await expectCleanFailure(b, /root\.path: rootfs .*\/rootfs does not exist/);
    expect(err.detail.field).toBe('root.path');
  });

  it('names the mount whose bind source is missing, with the errno', async () => {
    const b = makeBundle('badmount', ['true'], (s) => {
      s.mounts!.push({ destination: '/data', type: 'bind', source: '/nonexistent/source', options: ['rbind'] });
    });
    const err = await expectCleanFailure(b, /^mounts\[6\] \(\/data\): bind source \/nonexistent\/source: ENOENT \(no such file or directory\)$/);
    expect(err.detail).toMatchObject({ errno: 'ENOENT', field: 'mounts[6] (/data)' });
  });

  it('refuses an unknown namespace type', async () => {
    const b = makeBundle('badns', ['true'], (s) => {
      s.linux!.namespaces!.push({ type: 'time-travel' });
    });
    const err = await expectCleanFailure(b, /^linux\.namespaces\[5\]\.type: unknown namespace type "time-travel"$/);
    expect(err.kind).toBe('InvalidArgument');
  });

  it('refuses an invalid seccomp action', async () => {
    const b = makeBundle('badseccomp', ['true'], (s) => {
      s.linux!.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['getpid'], action: 'SCMP_ACT_EXPLODE' }] };
    });
    await expectCleanFailure(b, /^linux\.seccomp\.syscalls\[0\]\.action: invalid seccomp action "SCMP_ACT_EXPLODE"$/);
  });

  it('reports a failing setup step from inside the new container', async () => {
    // More open files than fs.nr_open allows: setrlimit fails in the init, as with runc.
    const b = makeBundle('badrlimit', ['true'], (s) => {
      s.process!.rlimits = [{ type: 'RLIMIT_NOFILE', hard: 2 ** 40, soft: 2 ** 40 }];
    });
    const err = await expectCleanFailure(b, /^process\.rlimits\[0\]: setrlimit 7: EPERM \(operation not permitted\)$/);
    expect(err.detail).toMatchObject({ step: 'setrlimit 7', errno: 'EPERM', field: 'process.rlimits[0]' });
  });

  it('fails the create, not the start, for a program that does not exist (as runc)', async () => {
    const b = makeBundle('noprog', ['/nonexistent']);
    await expectCleanFailure(b, /^process\.args\[0\]: exec \/nonexistent: ENOENT \(no such file or directory\)$/);
  });

  it('fails a prestart hook, runs nothing, leaves nothing, and still runs poststop hooks', async () => {
    const b = makeBundle('badhook', ['sh', '-c', 'echo should-not-run > /tmp/ran'], (s) => {
      s.hooks = { prestart: [{ path: '/bin/sh', args: ['sh', '-c', 'echo nope >&2; exit 3'] }] };
    });
    const seen = path.join(b.dir, 'poststop.json');
    b.spec.hooks!.poststop = [{ path: '/bin/sh', args: ['sh', '-c', `cat > ${seen}`] }];
    b.save();
    await expectCleanFailure(b, /^hooks\.prestart\[0\]: prestart hook \/bin\/sh exited with status 3: nope$/);
    expect(fs.existsSync(path.join(b.dir, 'rootfs', 'tmp', 'ran'))).toBe(false);
    // The lifecycle went on at delete: poststop saw a stopped container, without a pid.
    const state = JSON.parse(fs.readFileSync(seen, 'utf8')) as Record<string, unknown>;
    expect(state).toMatchObject({ id: b.id, status: 'stopped' });
    expect(state.pid).toBeUndefined();
  });

  it('gives up on a container whose setup hangs, within the setup deadline, and leaves nothing', async () => {
    const slow = new Harness({ setupDeadline: 2 });
    const b = slow.track(
      makeBundle('hang', ['true'], (s) => {
        s.hooks = { createContainer: [{ path: '/bin/sh', args: ['sh', '-c', 'sleep 60'] }] };
      }),
    );
    const before = footprint(slow.root, b.id);
    const started = Date.now();
    const err = await slow.create(b).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(String(err)).toMatch(/did not answer in time \(setup deadline\): ETIMEDOUT/);
    expect(footprint(slow.root, b.id)).toEqual({ mounts: before.mounts, sandboxes: [], cgroup: false, dirExists: false });
    await slow.cleanup();
  });

  it('answers ENOSPC clearly when the state disk is full, and leaves nothing', async () => {
    const full = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbox-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', full]);
    try {
      const small = new Harness({});
      const engine = new Engine({ root: path.join(full, 'root') });
      // Fill what is left of the disk.
      try {
        fs.writeFileSync(path.join(full, 'filler'), Buffer.alloc(1 << 20));
      } catch {
        // ENOSPC: full now
      }
      const b = small.track(makeBundle('full', ['true']));
      const err = await engine.create(b.id, b.dir).catch((e: unknown) => e);
      expect(String(err)).toMatch(/ENOSPC/);
      expect(footprint(path.join(full, 'root'), b.id)).toMatchObject({ sandboxes: [], cgroup: false, dirExists: false });
      await small.cleanup();
    } finally {
      execFileSync('umount', [full]);
      fs.rmSync(full, { recursive: true, force: true });
    }
  });

  it('refuses a second container with the same id and leaves the first alone', async () => {
    const a = makeBundle('dup', ['sleep', '60']);
    await h.create(a);
    const err = await h.engine.create(a.id, a.dir).catch((e: unknown) => e);
    expect(err).toMatchObject({ kind: 'AlreadyExists' });
    expect((await h.engine.ociState(a.id)).status).toBe('created');
    await h.engine.delete(a.id);
    expect(footprint(h.root, a.id)).toMatchObject({ sandboxes: [], cgroup: false, dirExists: false });
  });

  it('refuses operations the container status does not allow', async () => {
    const a = makeBundle('states', ['sleep', '60']);
    await h.create(a);
    await expect(h.engine.exec(a.id, { ...a.spec.process!, args: ['true'] })).rejects.toThrow(/cannot exec in container .*: it is created/);
    await h.engine.start(a.id);
    await expect(h.engine.start(a.id)).rejects.toThrow(/cannot start container .*: it is running/);
    await expect(h.engine.delete(a.id)).rejects.toThrow(/cannot delete container .*: it is running \(use force\)/);
    await h.engine.delete(a.id, true);
    await expect(h.engine.ociState(a.id)).rejects.toMatchObject({ kind: 'NotFound' });
  });
});
