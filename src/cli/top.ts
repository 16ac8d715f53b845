/**
 * `tsbox top`: every container under a state root, whichever daemon or CLI made it, read
 * without disturbing anyone: records are only read (never marked stopped), each live
 * sandbox is asked its state once, cgroups are read from the host.
 *
 * A state root holds the CLI's containers (`<root>/<id>/meta.json`) and the shim's, one
 * directory per containerd namespace (`<root>/<namespace>/<id>/meta.json`); the CLI's
 * default root (/run/tsbox) holds the shim's default one (/run/tsbox/containerd).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroupDriver, type CgroupDriver, type Stats } from '../sandbox/cgroups';
import { SandboxConnection, type SandboxState } from '../sandbox/sandbox-process';
import type { Status } from '../sandbox/status';
import { type ContainerRecord, sameProcess } from '../sandbox/store';

export interface TopRow {
  /** The containerd namespace; "" for a container the CLI made. */
  namespace: string;
  id: string;
  status: Status;
  /** The init's host pid while it runs. */
  pid: number | null;
  /** The container's tsbox-sandbox, while it runs. */
  sandboxPid: number | null;
  /** The sandbox's parent: the shim daemon that started it (or the CLI's caller's reaper). */
  daemonPid: number | null;
  cgroup: string | null;
  memoryBytes: number | null;
  cpuSeconds: number | null;
  /** Since the container was created (until it exited). */
  uptimeSeconds: number;
  /** Exec'd processes still running. */
  execs: number;
}

/**
 * Container directories (those with a meta.json) up to three levels below `root`, so the
 * default root shows the CLI's containers and the shim's default root below it
 * (`/run/tsbox/containerd/<namespace>/<id>`). The namespace is the parent directory's name.
 */
function records(root: string): { namespace: string; dir: string }[] {
  const out: { namespace: string; dir: string }[] = [];
  const walk = (dir: string, depth: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.'));
    } catch {
      return; // no such root, or it went away while read
    }
    for (const e of entries) {
      const sub = path.join(dir, e.name);
      if (fs.existsSync(path.join(sub, 'meta.json'))) out.push({ namespace: dir === root ? '' : path.basename(dir), dir: sub });
      else if (depth < 3) walk(sub, depth + 1);
    }
  };
  walk(root, 1);
  return out;
}

function parentOf(pid: number): number | null {
  try {
    const m = /^PPid:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Memory in use and CPU time consumed, from either cgroup version's metrics. */
function usage(stats: Stats): { memoryBytes: number; cpuSeconds: number } {
  if (stats.version === 1)
    return { memoryBytes: Number(stats.metrics.memory?.usage?.usage ?? 0), cpuSeconds: Number(stats.metrics.cpu?.usage?.total ?? 0) / 1e9 };
  return { memoryBytes: Number(stats.metrics.memory?.usage ?? 0), cpuSeconds: Number(stats.metrics.cpu?.usageUsec ?? 0) / 1e6 };
}

async function sandboxState(rec: ContainerRecord): Promise<SandboxState | null> {
  if (rec.status === 'stopped' || !sameProcess(rec.sandboxPid, rec.sandboxStartTime)) return null;
  let conn: SandboxConnection;
  try {
    conn = SandboxConnection.connect(rec.socket);
  } catch {
    return null; // it stopped listening: exiting
  }
  try {
    return await conn.request<SandboxState>({ op: 'state' });
  } catch {
    return null;
  } finally {
    conn.close();
  }
}

async function row(namespace: string, dir: string, cgroups: CgroupDriver, now: number): Promise<TopRow | null> {
  let rec: ContainerRecord;
  try {
    rec = JSON.parse(fs.readFileSync(path.join(dir, 'meta.json'), 'utf8')) as ContainerRecord;
  } catch {
    return null; // being deleted
  }
  const st = await sandboxState(rec);
  const c = st?.containers[rec.id];
  const live = c !== undefined && c.status !== 'stopped';
  const status: Status = live ? rec.status : 'stopped';
  let use: { memoryBytes: number | null; cpuSeconds: number | null } = { memoryBytes: null, cpuSeconds: null };
  if (live && rec.cgroup) {
    try {
      use = usage(cgroups.stats(rec.cgroup));
    } catch {
      // the cgroup went with the container meanwhile
    }
  }
  const until = status === 'stopped' && rec.exitedAt ? Date.parse(rec.exitedAt) : now;
  return {
    namespace,
    id: rec.id,
    status,
    pid: live && rec.pid ? rec.pid : null,
    sandboxPid: live ? rec.sandboxPid : null,
    daemonPid: live ? parentOf(rec.sandboxPid) : null,
    cgroup: rec.cgroup?.path ?? null,
    ...use,
    uptimeSeconds: Math.max(0, Math.round((until - Date.parse(rec.createdAt)) / 1000)),
    execs: live ? Object.values(c.execs).filter((e) => e.status !== 'stopped').length : 0,
  };
}

/** Every container under `root`, by namespace and id. */
export async function top(root: string, cgroups: CgroupDriver = cgroupDriver(), now = Date.now()): Promise<TopRow[]> {
  const rows = await Promise.all(records(root).map((r) => row(r.namespace, r.dir, cgroups, now)));
  return rows.filter((r): r is TopRow => r !== null).sort((a, b) => a.namespace.localeCompare(b.namespace) || a.id.localeCompare(b.id));
}

function mib(bytes: number | null): string {
  return bytes === null ? '-' : `${(bytes / 1048576).toFixed(1)}M`;
}

function duration(s: number): string {
  const [d, h, m] = [Math.floor(s / 86400), Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60)];
  return d ? `${d}d${h}h` : h ? `${h}h${m}m` : m ? `${m}m${s % 60}s` : `${s}s`;
}

/**
 * The table `tsbox top` prints. `previous` (the last refresh's rows, `elapsed` seconds
 * ago) gives CPU as a percentage of one core; without it the column is the CPU time used.
 */
export function formatTop(rows: TopRow[], previous?: { rows: TopRow[]; elapsed: number }): string {
  const before = new Map(previous?.rows.map((r) => [`${r.namespace}/${r.id}`, r.cpuSeconds]));
  const cpu = (r: TopRow): string => {
    if (r.cpuSeconds === null) return '-';
    const was = before.get(`${r.namespace}/${r.id}`);
    if (previous && was !== undefined && was !== null && previous.elapsed > 0) return `${(((r.cpuSeconds - was) / previous.elapsed) * 100).toFixed(1)}%`;
    return `${r.cpuSeconds.toFixed(2)}s`;
  };
  const table = [
    ['NAMESPACE', 'ID', 'STATUS', 'PID', 'SANDBOX', 'DAEMON', 'MEM', 'CPU', 'UPTIME', 'EXECS', 'CGROUP'],
    ...rows.map((r) => [
      r.namespace || '-',
      r.id,
      r.status,
      String(r.pid ?? '-'),
      String(r.sandboxPid ?? '-'),
      String(r.daemonPid ?? '-'),
      mib(r.memoryBytes),
      cpu(r),
      duration(r.uptimeSeconds),
      String(r.execs),
      r.cgroup ?? '-',
    ]),
  ];
  const widths = table[0].map((_, c) => Math.max(...table.map((line) => line[c].length)));
  return (
    table
      .map((line) =>
        line
          .map((cell, c) => cell.padEnd(widths[c]))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}
