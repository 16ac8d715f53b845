/**
 * What a busy node does to a shim: containerd away for a while, a daemon that stalls.
 * Each test runs in a containerd namespace of its own, so it has a daemon of its own.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { alive, ctr, CONTAINERD_SCRIPT, PROJECT_ROOT, rig, shimDaemons, taskPid, taskStatus, uniqueId, waitUntil } from '../rig/rig';

const TSBOX = ['--runtime', 'io.containerd.tsbox.v2'];

// These tests stop, restart and flood containerd: they get a private containerd of their
// own, so the other suites never run against one they disturbed.
let shared: string | undefined;
let own = '';
beforeAll(() => {
  shared = process.env.TSBOX_RIG_DIR;
  own = execFileSync(CONTAINERD_SCRIPT, ['start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  process.env.TSBOX_RIG_DIR = own;
}, 120_000);
afterAll(() => {
  if (own) execFileSync(CONTAINERD_SCRIPT, ['stop', own], { stdio: 'inherit' });
  process.env.TSBOX_RIG_DIR = shared;
}, 120_000);
const IMAGE = 'localhost/busybox:latest';

async function namespaceWithImage(): Promise<string> {
  const ns = uniqueId('rel');
  expect((await ctr(['images', 'import', path.join(PROJECT_ROOT, 'build', 'images', 'busybox.tar')], { namespace: ns })).code).toBe(0);
  return ns;
}

async function dropNamespace(ns: string, ids: string[]): Promise<void> {
  for (const id of ids) {
    await ctr(['task', 'rm', '-f', id], { namespace: ns });
    await ctr(['container', 'rm', id], { namespace: ns });
  }
  await ctr(['images', 'rm', IMAGE], { namespace: ns });
  await ctr(['namespaces', 'rm', ns]);
}

describe('events while containerd is unreachable', () => {
  it('delivers an exit that happened while containerd was down, once it is back', async () => {
    const ns = await namespaceWithImage();
    const id = uniqueId('away');
    expect((await ctr(['run', '-d', ...TSBOX, IMAGE, id, 'sleep', '600'], { namespace: ns })).code).toBe(0);
    const pid = await taskPid(id, ns);
    execFileSync(CONTAINERD_SCRIPT, ['down', rig().dir]);
    try {
      process.kill(pid, 'SIGKILL');
      // containerd stays away for a few seconds, as a restart on a busy node does (the old
      // shim gave up after five tries in about a second).
      await new Promise((r) => setTimeout(r, 4000));
    } finally {
      // Back with a log that names every event a shim forwards: containerd's own record
      // of the delivery, which no subscriber could miss by connecting too late.
      execFileSync(CONTAINERD_SCRIPT, ['up', rig().dir], { env: { ...process.env, TSBOX_CONTAINERD_LOG_LEVEL: 'trace' } });
    }
    const log = path.join(rig().dir, 'log', 'containerd.log');
    const forwarded = (topic: string) =>
      fs
        .readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => l.includes('msg="event forwarded"') && l.includes(`ns=${ns} `) && l.includes(`topic=${topic} `));
    try {
      await waitUntil(() => forwarded('/tasks/exit').length > 0, 'the exit event reaches containerd', 15_000);
      expect(forwarded('/tasks/exit')).toHaveLength(1);
    } finally {
      execFileSync(CONTAINERD_SCRIPT, ['restart', rig().dir]);
    }
    await dropNamespace(ns, [id]);
  }, 60_000);
});

describe('a daemon that stalls', () => {
  it('is waited for, never replaced: one daemon per group, and every container still found', async () => {
    const ns = await namespaceWithImage();
    const [first, second] = [uniqueId('stall'), uniqueId('stall')];
    expect((await ctr(['run', '-d', ...TSBOX, IMAGE, first, 'sleep', '600'], { namespace: ns })).code).toBe(0);
    const daemons = () => shimDaemons(`-namespace ${ns} `);
    const [daemon] = daemons().map(Number);
    expect(daemon).toBeGreaterThan(0);
    process.kill(daemon, 'SIGSTOP');
    let run: Promise<{ code: number; stderr: string }>;
    try {
      run = ctr(['run', '-d', ...TSBOX, IMAGE, second, 'sleep', '600'], { namespace: ns, timeoutMs: 60_000 });
      // Longer than start's 5 s wait for an answer, after which it used to spawn a second
      // daemon on the same socket.
      await new Promise((r) => setTimeout(r, 7000));
    } finally {
      process.kill(daemon, 'SIGCONT');
    }
    expect(await run).toMatchObject({ code: 0, stderr: '' });
    expect(daemons().map(Number)).toEqual([daemon]);
    // After a containerd restart both are still served (before, the second daemon's
    // containers answered "not found").
    execFileSync(CONTAINERD_SCRIPT, ['restart', rig().dir]);
    for (const id of [first, second]) expect(await taskStatus(id, ns)).toBe('RUNNING');
    for (const id of [first, second]) await ctr(['task', 'kill', '-s', 'KILL', id], { namespace: ns });
    await dropNamespace(ns, [first, second]);
    await waitUntil(() => !alive(daemon), 'the daemon leaves after its last task');
  }, 90_000);
});

describe('a long-lived container with many execs', () => {
  it('does not make its daemon grow: RSS flat once warm', async () => {
    const ns = await namespaceWithImage();
    const id = uniqueId('execs');
    expect((await ctr(['run', '-d', ...TSBOX, IMAGE, id, 'sleep', '600'], { namespace: ns })).code).toBe(0);
    const [daemon] = shimDaemons(`-namespace ${ns} `).map(Number);
    const rss = () => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${daemon}/status`, 'utf8'))?.[1]) / 1024;
    const execs = async (from: number, to: number) => {
      for (let i = from; i < to; i++) expect((await ctr(['task', 'exec', '--exec-id', `e${i}`, id, 'true'], { namespace: ns })).code).toBe(0);
    };
    await execs(0, 100); // warm-up: code compiled, pools filled
    const warm = rss();
    await execs(100, 400);
    // Before: +2.6 MB per 100 execs and rising (V8 grew its young generation and left
    // old garbage for much later); now a few MB at most over 300.
    expect(rss() - warm).toBeLessThan(6);
    await ctr(['task', 'kill', '-s', 'KILL', id], { namespace: ns });
    await dropNamespace(ns, [id]);
  }, 120_000);
});

describe('a burst', () => {
  it('starts 100 containers at once, kills them at once, and leaves nothing', async () => {
    const ns = await namespaceWithImage();
    const ids = Array.from({ length: 100 }, () => uniqueId('burst'));
    // Host network: 100 network namespaces torn down at once keep the kernel busy for
    // long after (it slowed every later test's namespace creation); the daemon is what
    // this tests.
    const runs = await Promise.all(
      ids.map((id) => ctr(['run', '-d', '--net-host', ...TSBOX, IMAGE, id, 'sleep', '600'], { namespace: ns, timeoutMs: 120_000 })),
    );
    expect(runs.filter((r) => r.code !== 0)).toEqual([]);
    const kills = await Promise.all(ids.map((id) => ctr(['task', 'kill', '-s', 'KILL', id], { namespace: ns })));
    expect(kills.filter((r) => r.code !== 0)).toEqual([]);
    await waitUntil(async () => !/RUNNING/.test((await ctr(['task', 'ls'], { namespace: ns })).stdout), 'every task stopped', 60_000);
    await Promise.all(ids.map((id) => ctr(['task', 'rm', id], { namespace: ns })));
    await dropNamespace(ns, ids);
    // Nothing of them on the host: state, mounts, processes.
    expect(fs.readdirSync(path.join(rig().dir, 'tsbox', ns)).filter((f) => !f.startsWith('.'))).toEqual([]);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toMatch(/burst-[0-9a-f]+\/rootfs/);
  }, 240_000);
});
