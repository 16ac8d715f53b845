/**
 * `tsbox top` against containers the shim runs in two containerd namespaces (so two shim
 * daemons): what it shows is checked against what containerd, the kernel and the daemons
 * say, and reading must change nothing.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TopRow as Row } from '../../src/cli/top';
import { ctr, PROJECT_ROOT, removeTask, rig, shimDaemons, taskPid, taskStatus, uniqueId, waitUntil } from '../rig/rig';

const IMAGE = 'localhost/busybox:latest';
const TSBOX = path.join(PROJECT_ROOT, 'bin', 'tsbox');

function tsboxTop(args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(TSBOX, ['--root', path.join(rig().dir, 'tsbox'), 'top', ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

function rows(): Row[] {
  const r = tsboxTop(['--json']);
  expect([r.code, r.err]).toEqual([0, '']);
  return JSON.parse(r.out) as Row[];
}

const cmdline = (pid: number) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');

describe('tsbox top', () => {
  const a = uniqueId('top-a');
  const b = uniqueId('top-b');

  afterAll(async () => {
    await removeTask(a);
    await removeTask(b, 'k8s.io');
  });

  it('shows every container of every namespace with its processes, daemon, cgroup and use', async () => {
    expect((await ctr(['run', '-d', '--runtime', 'io.containerd.tsbox.v2', IMAGE, a, 'sleep', '600'])).code).toBe(0);
    expect((await ctr(['task', 'exec', '-d', '--exec-id', 'x1', a, 'sleep', '600'])).code).toBe(0);
    expect((await ctr(['run', '-d', '--runtime', 'io.containerd.tsbox.v2', IMAGE, b, 'sleep', '600'], { namespace: 'k8s.io' })).code).toBe(0);

    const all = rows();
    const [ra, rb] = [a, b].map((id) => all.find((r) => r.id === id));
    expect(ra).toMatchObject({ namespace: 'default', status: 'running', pid: await taskPid(a), cgroup: `/default/${a}`, execs: 1 });
    expect(rb).toMatchObject({ namespace: 'k8s.io', status: 'running', pid: await taskPid(b, 'k8s.io'), cgroup: `/k8s.io/${b}`, execs: 0 });
    for (const [r, ns] of [
      [ra!, 'default'],
      [rb!, 'k8s.io'],
    ] as const) {
      expect(cmdline(r.sandboxPid!)).toMatch(/tsbox-sandbox --socket /);
      expect(shimDaemons(`-namespace ${ns} `)).toContain(String(r.daemonPid));
      expect(r.memoryBytes).toBeGreaterThan(0);
      expect(r.cpuSeconds).toBeGreaterThanOrEqual(0);
      expect(r.uptimeSeconds).toBeGreaterThanOrEqual(0);
    }
    const table = tsboxTop(['--once']);
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/^NAMESPACE\s+ID\s+STATUS\s+PID\s+SANDBOX\s+DAEMON\s+MEM\s+CPU\s+UPTIME\s+EXECS\s+CGROUP\n/);
    expect(table.out).toMatch(
      new RegExp(
        `^default\\s+${a}\\s+running\\s+${ra!.pid}\\s+${ra!.sandboxPid}\\s+${ra!.daemonPid}\\s+[\\d.]+M\\s+[\\d.]+s\\s+\\S+\\s+1\\s+/default/${a}$`,
        'm',
      ),
    );
  });

  it('sees a stopped container as stopped without writing its record', async () => {
    const meta = path.join(rig().dir, 'tsbox', 'default', a, 'meta.json');
    expect((await ctr(['task', 'kill', '-s', 'KILL', a])).code).toBe(0);
    await waitUntil(async () => (await taskStatus(a)) === 'STOPPED', `${a} stopped`);
    const before = fs.statSync(meta).mtimeMs;
    expect(rows().find((r) => r.id === a)).toMatchObject({ status: 'stopped', pid: null, sandboxPid: null, memoryBytes: null, execs: 0 });
    expect(fs.statSync(meta).mtimeMs).toBe(before);
  });
});
