/**
 * Cgroup statistics in the shapes containerd's metrics types carry
 * (io.containerd.cgroups.v1.Metrics on v1 hosts, v2.Metrics on v2 hosts — kubelet rejects
 * the wrong one). Parsers are pure and tested against real files' formats; `readStats`
 * does the reading.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { io } from '../../proto';

/** "key value" lines (memory.stat, cpu.stat, memory.events, …). */
export function parseKeyValues(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out.set(k, Number(v));
  }
  return out;
}

/** A single number, "max" (no limit) as 0, as the v1 metrics types report it. */
export function parseNumber(text: string): number {
  const t = text.trim();
  return /^\d+$/.test(t) ? Number(t) : 0;
}

/**
 * A v2 limit: "max" is reported as the largest uint64, as runc-v2's shim does. A JS
 * number cannot hold 2^64-1; protobufjs encodes a uint64 given as a decimal string
 * exactly, so that is what stands in the (number-typed) field.
 */
export const UNLIMITED = '18446744073709551615' as unknown as number;

export function parseLimit(text: string): number {
  return text.trim() === 'max' ? UNLIMITED : parseNumber(text);
}

/** v1 memory.stat key → MemoryStat field, where snake→camel does not give the name. */
const V1_MEMORY_RENAMES: Record<string, string> = {
  pgpgin: 'pgPgIn',
  pgpgout: 'pgPgOut',
  pgfault: 'pgFault',
  pgmajfault: 'pgMajFault',
  hierarchical_memsw_limit: 'hierarchicalSwapLimit',
  total_pgpgin: 'totalPgPgIn',
  total_pgpgout: 'totalPgPgOut',
  total_pgfault: 'totalPgFault',
  total_pgmajfault: 'totalPgMajFault',
};

const camel = (s: string) => s.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

const V1_MEMORY_FIELDS = new Set([
  'cache',
  'rss',
  'rssHuge',
  'mappedFile',
  'dirty',
  'writeback',
  'pgPgIn',
  'pgPgOut',
  'pgFault',
  'pgMajFault',
  'inactiveAnon',
  'activeAnon',
  'inactiveFile',
  'activeFile',
  'unevictable',
  'hierarchicalMemoryLimit',
  'hierarchicalSwapLimit',
  'totalCache',
  'totalRss',
  'totalRssHuge',
  'totalMappedFile',
  'totalDirty',
  'totalWriteback',
  'totalPgPgIn',
  'totalPgPgOut',
  'totalPgFault',
  'totalPgMajFault',
  'totalInactiveAnon',
  'totalActiveAnon',
  'totalInactiveFile',
  'totalActiveFile',
  'totalUnevictable',
]);

export function v1MemoryStat(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of parseKeyValues(text)) {
    const field = V1_MEMORY_RENAMES[k] ?? camel(k);
    if (V1_MEMORY_FIELDS.has(field)) out[field] = v;
  }
  return out;
}

/** blkio "8:0 Read 4096" lines; the "Total" summary line is not an entry. */
export function v1BlkioEntries(text: string): io.containerd.cgroups.v1.IBlkIOEntry[] {
  const out: io.containerd.cgroups.v1.IBlkIOEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):(\d+) (\w+) (\d+)$/.exec(line.trim());
    if (m) out.push({ major: Number(m[1]), minor: Number(m[2]), op: m[3], value: Number(m[4]) });
  }
  return out;
}

const V2_MEMORY_FIELDS = new Set([
  'anon',
  'file',
  'kernel_stack',
  'slab',
  'sock',
  'shmem',
  'file_mapped',
  'file_dirty',
  'file_writeback',
  'anon_thp',
  'inactive_anon',
  'active_anon',
  'inactive_file',
  'active_file',
  'unevictable',
  'slab_reclaimable',
  'slab_unreclaimable',
  'pgfault',
  'pgmajfault',
  'workingset_refault',
  'workingset_activate',
  'workingset_nodereclaim',
  'pgrefill',
  'pgscan',
  'pgsteal',
  'pgactivate',
  'pgdeactivate',
  'pglazyfree',
  'pglazyfreed',
  'thp_fault_alloc',
  'thp_collapse_alloc',
]);

export function v2MemoryStat(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of parseKeyValues(text)) if (V2_MEMORY_FIELDS.has(k)) out[camel(k)] = v;
  return out;
}

/** io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0". */
export function v2IoEntries(text: string): io.containerd.cgroups.v2.IIOEntry[] {
  const out: io.containerd.cgroups.v2.IIOEntry[] = [];
  for (const line of text.split('\n')) {
    const [dev, ...kvs] = line.trim().split(/\s+/);
    const m = /^(\d+):(\d+)$/.exec(dev ?? '');
    if (!m) continue;
    const f = Object.fromEntries(kvs.map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)]));
    out.push({ major: Number(m[1]), minor: Number(m[2]), rbytes: f.rbytes ?? 0, wbytes: f.wbytes ?? 0, rios: f.rios ?? 0, wios: f.wios ?? 0 });
  }
  return out;
}

/** A cgroup file's text; '' when the kernel does not offer it (controller off, older kernel). */
export function readCgroupFile(dir: string | undefined, file: string): string {
  if (!dir) return '';
  try {
    return fs.readFileSync(path.join(dir, file), 'utf8');
  } catch {
    // Absent means "not reported": the stat or setting it holds is left out.
    return '';
  }
}

/** USER_HZ is 100 on every Linux architecture containers run on: one tick is 10 ms. */
const TICK_NS = 10_000_000;

export type Stats = { version: 1; metrics: io.containerd.cgroups.v1.IMetrics } | { version: 2; metrics: io.containerd.cgroups.v2.IMetrics };

/** io.containerd.cgroups.v2.Metrics from a unified cgroup directory. */
export function readV2Stats(dir: string | undefined): Stats {
  const cpu = parseKeyValues(readCgroupFile(dir, 'cpu.stat'));
  const events = parseKeyValues(readCgroupFile(dir, 'memory.events'));
  return {
    version: 2,
    metrics: {
      pids: { current: parseNumber(readCgroupFile(dir, 'pids.current')), limit: parseLimit(readCgroupFile(dir, 'pids.max')) },
      cpu: {
        usageUsec: cpu.get('usage_usec') ?? 0,
        userUsec: cpu.get('user_usec') ?? 0,
        systemUsec: cpu.get('system_usec') ?? 0,
        nrPeriods: cpu.get('nr_periods') ?? 0,
        nrThrottled: cpu.get('nr_throttled') ?? 0,
        throttledUsec: cpu.get('throttled_usec') ?? 0,
      },
      memory: {
        ...v2MemoryStat(readCgroupFile(dir, 'memory.stat')),
        usage: parseNumber(readCgroupFile(dir, 'memory.current')),
        usageLimit: parseLimit(readCgroupFile(dir, 'memory.max')),
        swapUsage: parseNumber(readCgroupFile(dir, 'memory.swap.current')),
        swapLimit: parseLimit(readCgroupFile(dir, 'memory.swap.max')),
      },
      io: { usage: v2IoEntries(readCgroupFile(dir, 'io.stat')) },
      memoryEvents: {
        low: events.get('low') ?? 0,
        high: events.get('high') ?? 0,
        max: events.get('max') ?? 0,
        oom: events.get('oom') ?? 0,
        oomKill: events.get('oom_kill') ?? 0,
      },
    },
  };
}

/** io.containerd.cgroups.v1.Metrics from the container's directory in each controller's hierarchy. */
export function readV1Stats(dirFor: (controller: string) => string | undefined): Stats {
  const cpuacct = dirFor('cpuacct');
  const mem = dirFor('memory');
  const ticks = parseKeyValues(readCgroupFile(cpuacct, 'cpuacct.stat'));
  const throttle = parseKeyValues(readCgroupFile(dirFor('cpu'), 'cpu.stat'));
  const entry = (prefix: string): io.containerd.cgroups.v1.IMemoryEntry => ({
    usage: parseNumber(readCgroupFile(mem, `${prefix}usage_in_bytes`)),
    max: parseNumber(readCgroupFile(mem, `${prefix}max_usage_in_bytes`)),
    limit: parseNumber(readCgroupFile(mem, `${prefix}limit_in_bytes`)),
    failcnt: parseNumber(readCgroupFile(mem, `${prefix}failcnt`)),
  });
  const oom = parseKeyValues(readCgroupFile(mem, 'memory.oom_control'));
  const blkio = dirFor('blkio');
  return {
    version: 1,
    metrics: {
      pids: { current: parseNumber(readCgroupFile(dirFor('pids'), 'pids.current')), limit: parseNumber(readCgroupFile(dirFor('pids'), 'pids.max')) },
      cpu: {
        usage: {
          total: parseNumber(readCgroupFile(cpuacct, 'cpuacct.usage')),
          user: (ticks.get('user') ?? 0) * TICK_NS,
          kernel: (ticks.get('system') ?? 0) * TICK_NS,
          perCpu: readCgroupFile(cpuacct, 'cpuacct.usage_percpu').trim().split(/\s+/).filter(Boolean).map(Number),
        },
        throttling: {
          periods: throttle.get('nr_periods') ?? 0,
          throttledPeriods: throttle.get('nr_throttled') ?? 0,
          throttledTime: throttle.get('throttled_time') ?? 0,
        },
      },
      memory: {
        ...v1MemoryStat(readCgroupFile(mem, 'memory.stat')),
        usage: entry('memory.'),
        swap: entry('memory.memsw.'),
        kernel: entry('memory.kmem.'),
        kernelTcp: entry('memory.kmem.tcp.'),
      },
      blkio: {
        ioServiceBytesRecursive: v1BlkioEntries(readCgroupFile(blkio, 'blkio.throttle.io_service_bytes_recursive')),
        ioServicedRecursive: v1BlkioEntries(readCgroupFile(blkio, 'blkio.throttle.io_serviced_recursive')),
      },
      memoryOomControl: { oomKillDisable: oom.get('oom_kill_disable') ?? 0, underOom: oom.get('under_oom') ?? 0, oomKill: oom.get('oom_kill') ?? 0 },
    },
  };
}
