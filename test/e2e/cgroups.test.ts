/**
 * What operators get from cgroups through ctr: metrics, pause/resume, update, OOM — on
 * the host's real hierarchy (v1 here, v2 in the VM lane).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Client, Code, callTyped } from '../../src/ttrpc';
import { containerd, google } from '../../src/proto';
import { cgroupChildren, cpuQuota, cpuUsageNs, frozen, memoryLimit, pidsCurrent } from '../cgroupfs';
import { ctr, removeTask as remove, rig, taskPid, taskStatus, taskTopicsOfRun, uniqueId, waitUntil as until } from '../rig/rig';

const TSBOX = ['--runtime', 'io.containerd.tsbox.v2'];
const IMAGE = 'localhost/busybox:latest';

interface MetricsJson {
  cpu: { usage?: { total: number }; usage_usec?: number };
  memory: { usage: number | { usage: number; limit: number }; usage_limit?: number };
  pids: { current: number };
}

/** What `ctr task metrics --format json` shows, v1 (cgroups.v1.Metrics) or v2 (v2.Metrics). */
function metrics(m: MetricsJson): { cpuNs: number; memory: number; memoryLimit: number; pids: number } {
  if (typeof m.memory.usage === 'number') {
    return { cpuNs: (m.cpu.usage_usec ?? 0) * 1000, memory: m.memory.usage, memoryLimit: m.memory.usage_limit ?? 0, pids: m.pids.current };
  }
  return { cpuNs: m.cpu.usage?.total ?? 0, memory: m.memory.usage.usage, memoryLimit: m.memory.usage.limit, pids: m.pids.current };
}

describe('cgroups through the shim', () => {
  it('reports metrics for a busy container that match its cgroup files', async () => {
    const id = uniqueId('busy');
    await ctr(['run', '-d', ...TSBOX, '--memory-limit', String(64 << 20), IMAGE, id, 'sh', '-c', 'while :; do :; done']);
    try {
      await until(() => cpuUsageNs(`default/${id}`) > 10_000_000, 'cpu time accumulates');
      const m = metrics(JSON.parse((await ctr(['task', 'metrics', '--format', 'json', id])).stdout) as MetricsJson);
      expect(m.cpuNs).toBeGreaterThan(10_000_000);
      expect(m.cpuNs).toBeLessThanOrEqual(cpuUsageNs(`default/${id}`));
      expect(m.memory).toBeGreaterThan(0);
      expect(m.memoryLimit).toBe(64 << 20);
      expect(m.pids).toBe(pidsCurrent(`default/${id}`));
    } finally {
      await remove(id);
    }
  });

  it('pauses and resumes: PAUSED in ctr, frozen cgroup, no exec while paused, progress after', async () => {
    const id = uniqueId('pause');
    await ctr(['run', '-d', ...TSBOX, IMAGE, id, 'sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i > /tmp/n; done']);
    try {
      const pid = await taskPid(id);
      const counter = () => Number(fs.readFileSync(`/proc/${pid}/root/tmp/n`, 'utf8').trim() || 0);
      await until(() => counter() > 0, 'the loop runs');
      expect((await ctr(['task', 'pause', id])).code).toBe(0);
      expect(await taskStatus(id)).toBe('PAUSED');
      expect(frozen(`default/${id}`)).toBe(true);
      const exec = await ctr(['task', 'exec', '--exec-id', 'nope', id, 'true']);
      expect(exec.code).not.toBe(0);
      expect(exec.stderr).toMatch(/paused/);
      const frozenAt = counter();
      expect((await ctr(['task', 'resume', id])).code).toBe(0);
      expect(await taskStatus(id)).toBe('RUNNING');
      await until(() => counter() > frozenAt + 10, 'the loop continues after resume');
    } finally {
      await remove(id);
    }
  });

  it('updates memory and cpu limits of a running container', async () => {
    const id = uniqueId('upd');
    await ctr(['run', '-d', ...TSBOX, '--memory-limit', String(64 << 20), IMAGE, id, 'sleep', '60']);
    try {
      // ctr 1.6 has no `task update`: send the Update containerd's CRI would send.
      const bundle = path.join(rig().dir, 'state', 'io.containerd.runtime.v2.task', 'default', id);
      const shim = new Client(fs.readFileSync(path.join(bundle, 'address'), 'utf8'));
      const T = containerd.task.v2;
      const resources = { memory: { limit: 96 << 20 }, cpu: { quota: 20000, period: 100000 } };
      try {
        await callTyped(
          shim,
          'containerd.task.v2.Task',
          'Update',
          T.UpdateTaskRequest,
          { id, resources: { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from(JSON.stringify(resources)) } },
          google.protobuf.Empty,
        );
        const bad = await callTyped(
          shim,
          'containerd.task.v2.Task',
          'Update',
          T.UpdateTaskRequest,
          { id, resources: { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: Buffer.from('{"pids":{"limit":') } },
          google.protobuf.Empty,
        ).catch((e: unknown) => e);
        expect(bad).toMatchObject({ code: Code.INVALID_ARGUMENT });
      } finally {
        shim.close();
      }
      expect(memoryLimit(`default/${id}`)).toBe(String(96 << 20));
      expect(cpuQuota(`default/${id}`)).toBe('20000');
    } finally {
      await remove(id);
    }
  });

  it('reports an OOM kill: exit 137 with /tasks/oom before /tasks/exit', async () => {
    let code = 0;
    const topics = await taskTopicsOfRun('oom', async (id) => {
      code = (await ctr(['run', '--rm', ...TSBOX, '--memory-limit', String(16 << 20), IMAGE, id, 'dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1']))
        .code;
    });
    expect(code).toBe(137);
    expect(topics.indexOf('/tasks/oom')).toBeGreaterThanOrEqual(0);
    expect(topics.indexOf('/tasks/oom')).toBeLessThan(topics.indexOf('/tasks/exit'));
  });

  it('leaves no cgroup behind', () => {
    const left = cgroupChildren('default');
    expect(left.filter((d) => /(busy|pause|upd|oom)-/.test(d))).toEqual([]);
    expect(rig().dir).toBeTruthy();
  });
});
