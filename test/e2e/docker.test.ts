/**
 * tsbox under Docker: a private dockerd (scripts/docker: Debian's docker.io over this run's
 * containerd, its own data-root, exec-root and socket, no iptables, no bridge) has tsbox as
 * a runtime through the README's daemon.json, beside runc. Docker drives it through
 * containerd's runc-v2 shim, so every case here is compared with the same case on runc.
 */
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { frozen, memoryCgroupOf, memoryLimit } from '../cgroupfs';
import { PROJECT_ROOT, rig, RunResult, uniqueId } from '../rig/rig';

const DOCKER_SCRIPT = path.join(PROJECT_ROOT, 'scripts', 'docker');
const IMAGE = 'localhost/busybox:latest';
const RUNTIMES = ['tsbox', 'runc'] as const;
type Runtime = (typeof RUNTIMES)[number];

function docker(args: string[], timeoutMs = 60000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(DOCKER_SCRIPT, ['cli', rig().dir, ...args], { timeout: timeoutMs }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

async function inspect(id: string, format: string): Promise<string> {
  const r = await docker(['inspect', '-f', format, id]);
  if (r.code !== 0) throw new Error(`docker inspect ${id}: ${r.stderr}`);
  return r.stdout.trim();
}

/** The container's cgroup (relative to a controller's root) as the host sees it. */
async function cgroupOf(id: string): Promise<string> {
  const pid = await inspect(id, '{{.State.Pid}}');
  const rel = memoryCgroupOf(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
  if (!rel) throw new Error(`no memory cgroup for ${id} (pid ${pid})`);
  return rel;
}

/** tsbox-sandbox processes serving containers of this dockerd. */
function sandboxes(): string[] {
  try {
    return execFileSync('pgrep', ['-f', `tsbox-sandbox --socket ${path.join(rig().dir, 'docker')}/`], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * What the runtimes keep under Docker's runtime roots (`runtime-NAME/moby` in the exec-root): a state
 * directory per container, and tsbox's control sockets. Empty once every container is gone.
 */
function leftovers(): string[] {
  const exec = path.join(rig().dir, 'docker', 'exec');
  const under = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir).map((e) => path.join(dir, e)) : []);
  return fs
    .readdirSync(exec)
    .filter((d) => d.startsWith('runtime-'))
    .flatMap((d) => under(path.join(exec, d, 'moby')))
    .flatMap((e) => (path.basename(e) === '.sockets' ? under(e) : [e]));
}

function run(runtime: Runtime, args: string[]): Promise<RunResult> {
  return docker(['run', '--network', 'none', '--runtime', runtime, ...args]);
}

beforeAll(() => {
  execFileSync(DOCKER_SCRIPT, ['start', rig().dir], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120000 });
}, 150000);

afterAll(() => {
  execFileSync(DOCKER_SCRIPT, ['stop', rig().dir], { stdio: ['ignore', 'ignore', 'inherit'] });
});

describe('docker with tsbox as a runtime (daemon.json "runtimes"), compared with runc', () => {
  it('runs to the exit code with stdout and stderr, with and without a tty, and removes it', async () => {
    const seen: Record<string, unknown> = {};
    for (const rt of RUNTIMES) {
      const plain = await run(rt, ['--rm', IMAGE, 'sh', '-c', 'echo out; echo err >&2; exit 3']);
      const tty = await run(rt, ['--rm', '-t', IMAGE, 'sh', '-c', 'tty; exit 2']);
      seen[rt] = { plain, tty: { code: tty.code, stdout: tty.stdout } };
      expect([rt, plain]).toEqual([rt, { code: 3, stdout: 'out\n', stderr: 'err\n' }]);
      expect([rt, tty.code, tty.stdout]).toEqual([rt, 2, '/dev/pts/0\r\n']);
      expect(leftovers()).toEqual([]);
    }
    expect(seen.tsbox).toEqual(seen.runc);
    expect(sandboxes()).toEqual([]);
  }, 120000);

  it('execs (plain, tty, detached), lists processes, pauses, updates limits and stops', async () => {
    for (const rt of RUNTIMES) {
      const id = uniqueId(`dk-${rt}`);
      expect((await run(rt, ['-d', '--name', id, IMAGE, 'sh', '-c', 'trap "exit 7" TERM; while :; do sleep 0.1; done'])).code).toBe(0);
      const ex = await docker(['exec', id, 'sh', '-c', 'echo in $(cat /proc/1/comm); exit 5']);
      expect([rt, ex]).toEqual([rt, { code: 5, stdout: 'in sh\n', stderr: '' }]);
      const tty = await docker(['exec', '-t', id, 'sh', '-c', 'tty; exit 4']);
      expect([rt, tty.code, tty.stdout]).toEqual([rt, 4, '/dev/pts/0\r\n']);
      expect((await docker(['exec', '-d', id, 'sleep', '300'])).code).toBe(0);
      // `docker top` asks the runtime (`ps --format json`) for the container's pids.
      const top = await docker(['top', id, '-o', 'pid,args']);
      expect([rt, top.code, top.stdout]).toEqual([rt, 0, expect.stringContaining('sleep 300')]);

      const cgroup = await cgroupOf(id);
      expect((await docker(['pause', id])).code).toBe(0);
      expect([rt, await inspect(id, '{{.State.Status}}'), frozen(cgroup)]).toEqual([rt, 'paused', true]);
      expect((await docker(['unpause', id])).code).toBe(0);
      expect([rt, await inspect(id, '{{.State.Status}}'), frozen(cgroup)]).toEqual([rt, 'running', false]);

      // `update` hands the runtime the new resources on stdin (`update --resources -`).
      expect((await docker(['update', '--memory', '64m', '--memory-swap', '64m', id])).code).toBe(0);
      expect([rt, memoryLimit(cgroup)]).toEqual([rt, String(64 << 20)]);

      // SIGTERM reaches the container's init, which exits 7 by its trap.
      expect((await docker(['stop', '-t', '20', id])).code).toBe(0);
      expect([rt, await inspect(id, '{{.State.Status}} {{.State.ExitCode}}')]).toEqual([rt, 'exited 7']);
      expect((await docker(['rm', id])).code).toBe(0);
      expect(leftovers()).toEqual([]);
    }
    expect(sandboxes()).toEqual([]);
  }, 180000);

  it('kills with a signal and reports 128+signal, then removes with --force', async () => {
    for (const rt of RUNTIMES) {
      const id = uniqueId(`dk-${rt}`);
      expect((await run(rt, ['-d', '--name', id, IMAGE, 'sleep', '600'])).code).toBe(0);
      expect((await docker(['kill', id])).code).toBe(0);
      expect([rt, (await docker(['wait', id])).stdout.trim()]).toEqual([rt, '137']);
      const again = await docker(['kill', id]);
      expect([rt, again.code, again.stderr]).toEqual([rt, 1, expect.stringMatching(/is not running/)]);
      expect((await run(rt, ['-d', '--name', `${id}-f`, IMAGE, 'sleep', '600'])).code).toBe(0);
      expect((await docker(['rm', '-f', id, `${id}-f`])).code).toBe(0);
      expect(leftovers()).toEqual([]);
    }
    expect(sandboxes()).toEqual([]);
  }, 120000);
});
