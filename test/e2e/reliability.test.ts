/**
 * What a busy node does to a shim: containerd away for a while, a daemon that stalls.
 * Each test runs in a containerd namespace of its own, so it has a daemon of its own.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ctr, CONTAINERD_SCRIPT, PROJECT_ROOT, rig, taskPid, uniqueId, waitUntil } from '../rig/rig';

const TSBOX = ['--runtime', 'io.containerd.tsbox.v2'];
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
    const forwarded = (topic: string) => fs.readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('msg="event forwarded"') && l.includes(`ns=${ns} `) && l.includes(`topic=${topic} `));
    try {
      await waitUntil(() => forwarded('/tasks/exit').length > 0, 'the exit event reaches containerd', 15_000);
      expect(forwarded('/tasks/exit')).toHaveLength(1);
    } finally {
      execFileSync(CONTAINERD_SCRIPT, ['restart', rig().dir]);
    }
    await dropNamespace(ns, [id]);
  }, 60_000);
});
