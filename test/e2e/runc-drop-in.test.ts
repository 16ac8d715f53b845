/**
 * tsbox as a runc drop-in: containerd's own runc-v2 shim drives bin/tsbox through
 * `ctr run --runc-binary`, exactly as it drives runc, and each case is compared with runc.
 * The shim waits for the pid named in --pid-file as a child of its own (it is a subreaper);
 * tsbox hands that process to it (src/sandbox/engine.ts: callerReaps).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ctr, PROJECT_ROOT, rig, taskStatus, uniqueId, waitUntil } from '../rig/rig';

const IMAGE = 'localhost/busybox:latest';
const TSBOX = path.join(PROJECT_ROOT, 'bin', 'tsbox');

/** The runc-v2 shim with BINARY as its runtime and a --root of its own under the rig. */
function runtime(binary: 'tsbox' | 'runc'): string[] {
  return ['--runtime', 'io.containerd.runc.v2', '--runc-binary', binary === 'tsbox' ? TSBOX : 'runc', '--runc-root', path.join(rig().dir, `drop-in-${binary}`)];
}

/** Pids of tsbox-sandbox processes serving containers under this test's root. */
function sandboxes(): string[] {
  try {
    return execFileSync('pgrep', ['-f', `tsbox-sandbox --socket ${path.join(rig().dir, 'drop-in-tsbox')}`], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean);
  } catch {
    return [];
  }
}

/** What is left of a container's state under the runtime's root. */
function leftovers(binary: 'tsbox' | 'runc', id: string): boolean {
  return fs.existsSync(path.join(rig().dir, `drop-in-${binary}`, 'default', id));
}

describe('ctr run --runc-binary bin/tsbox (the runc-v2 shim drives tsbox like runc)', () => {
  it('runs a container to its exit code and leaves nothing behind, as runc does', async () => {
    for (const binary of ['tsbox', 'runc'] as const) {
      const id = uniqueId(`drop-${binary}`);
      const r = await ctr(['run', '--rm', ...runtime(binary), IMAGE, id, 'sh', '-c', 'echo out; echo err >&2; exit 3']);
      expect([binary, r]).toEqual([binary, { code: 3, stdout: 'out\n', stderr: 'err\n' }]);
      expect(leftovers(binary, id)).toBe(false);
    }
    expect(sandboxes()).toEqual([]);
  });

  it('execs with exit codes, pauses, resumes, kills a running task and removes it', async () => {
    for (const binary of ['tsbox', 'runc'] as const) {
      const id = uniqueId(`drop-${binary}`);
      expect((await ctr(['run', '-d', ...runtime(binary), IMAGE, id, 'sleep', '600'])).code).toBe(0);
      const ex = await ctr(['task', 'exec', '--exec-id', 'e1', id, 'sh', '-c', 'echo in $(cat /proc/1/comm); exit 5']);
      expect([binary, ex]).toEqual([binary, { code: 5, stdout: 'in sleep\n', stderr: '' }]);
      expect((await ctr(['task', 'pause', id])).code).toBe(0);
      expect([binary, await taskStatus(id)]).toEqual([binary, 'PAUSED']);
      expect((await ctr(['task', 'resume', id])).code).toBe(0);
      expect([binary, await taskStatus(id)]).toEqual([binary, 'RUNNING']);
      // --all: the shim runs `kill --all`, every process of the container (docker.test.ts kills without it).
      expect((await ctr(['task', 'exec', '-d', '--exec-id', 'e2', id, 'sleep', '600'])).code).toBe(0);
      expect((await ctr(['task', 'kill', '-a', '-s', 'KILL', id])).code).toBe(0);
      await waitUntil(async () => (await taskStatus(id)) === 'STOPPED', `${id} stopped`);
      // Killing a stopped task: containerd answers "not found" for both.
      const again = await ctr(['task', 'kill', '-s', 'KILL', id]);
      expect([binary, again.code, again.stderr]).toEqual([binary, 1, expect.stringMatching(/not found/)]);
      expect((await ctr(['task', 'rm', id])).code).toBe(0);
      expect((await ctr(['container', 'rm', id])).code).toBe(0);
      expect(leftovers(binary, id)).toBe(false);
    }
    expect(sandboxes()).toEqual([]);
  });
});
