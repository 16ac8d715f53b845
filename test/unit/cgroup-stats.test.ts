/** Cgroup file formats → metrics, against text as real hosts print it. */
import { io } from '../../src/gen/proto';
import { parseKeyValues, parseLimit, parseNumber, v1MemoryStat, v1BlkioEntries, v2MemoryStat, v2IoEntries } from '../../src/sandbox/cgroups/stats';

// cgroup v2 (Debian 12, kernel 6.1) memory.stat, io.stat, cpu.stat, memory.events excerpts.
const V2_MEMORY_STAT = `anon 1052672
file 4096
kernel 233472
kernel_stack 16384
pagetables 40960
sock 0
shmem 0
file_mapped 0
file_dirty 0
file_writeback 0
anon_thp 0
inactive_anon 1048576
active_anon 4096
inactive_file 4096
active_file 0
unevictable 0
slab_reclaimable 36216
slab_unreclaimable 98032
pgfault 1287
pgmajfault 0
workingset_refault_anon 0
pgrefill 0
thp_fault_alloc 0`;
const V2_IO_STAT = `8:0 rbytes=1597440 wbytes=4096 rios=82 wios=1 dbytes=0 dios=0
254:0 rbytes=0 wbytes=12288 rios=0 wios=3 dbytes=0 dios=0`;
const V2_CPU_STAT = `usage_usec 20114
user_usec 12180
system_usec 7934
nr_periods 4
nr_throttled 1
throttled_usec 5410`;

// cgroup v1 (the rig's hybrid host) memory.stat and blkio excerpts.
const V1_MEMORY_STAT = `cache 135168
rss 569344
rss_huge 0
shmem 0
mapped_file 0
dirty 0
writeback 0
pgpgin 456
pgpgout 283
pgfault 1065
pgmajfault 0
inactive_anon 565248
active_anon 0
inactive_file 135168
active_file 0
unevictable 0
hierarchical_memory_limit 67108864
hierarchical_memsw_limit 9223372036854771712
total_cache 135168
total_rss 569344
total_pgpgin 456
total_pgmajfault 0`;
const V1_BLKIO = `8:0 Read 4096
8:0 Write 0
8:0 Sync 4096
8:0 Async 0
8:0 Discard 0
8:0 Total 4096
Total 4096`;

describe('cgroup stats parsers', () => {
  it('reads v2 memory.stat into the v2 MemoryStat fields, dropping unknown keys', () => {
    const m = v2MemoryStat(V2_MEMORY_STAT);
    expect(m).toMatchObject({
      anon: 1052672,
      file: 4096,
      kernelStack: 16384,
      inactiveAnon: 1048576,
      slabUnreclaimable: 98032,
      pgfault: 1287,
      thpFaultAlloc: 0,
    });
    expect(m).not.toHaveProperty('kernel');
    expect(m).not.toHaveProperty('pagetables');
  });

  it('reads v2 io.stat and cpu.stat', () => {
    expect(v2IoEntries(V2_IO_STAT)).toEqual([
      { major: 8, minor: 0, rbytes: 1597440, wbytes: 4096, rios: 82, wios: 1 },
      { major: 254, minor: 0, rbytes: 0, wbytes: 12288, rios: 0, wios: 3 },
    ]);
    expect(Object.fromEntries(parseKeyValues(V2_CPU_STAT))).toEqual({
      usage_usec: 20114,
      user_usec: 12180,
      system_usec: 7934,
      nr_periods: 4,
      nr_throttled: 1,
      throttled_usec: 5410,
    });
  });

  it('maps v1 memory.stat names onto the v1 MemoryStat fields', () => {
    expect(v1MemoryStat(V1_MEMORY_STAT)).toMatchObject({
      cache: 135168,
      rss: 569344,
      pgPgIn: 456,
      pgPgOut: 283,
      pgFault: 1065,
      hierarchicalMemoryLimit: 67108864,
      totalPgPgIn: 456,
    });
  });

  it('reads v1 blkio entries without the Total line', () => {
    const e = v1BlkioEntries(V1_BLKIO);
    expect(e).toHaveLength(6);
    expect(e[0]).toEqual({ major: 8, minor: 0, op: 'Read', value: 4096 });
  });

  it('reads "max" as no limit', () => {
    expect(parseNumber('max\n')).toBe(0);
    expect(parseNumber('20\n')).toBe(20);
    // v2 "max" becomes the largest uint64 on the wire, as with runc-v2.
    const encoded = io.containerd.cgroups.v2.PidsStat.encode({ current: 1, limit: parseLimit('max\n') }).finish();
    expect(Buffer.from(encoded).toString('hex')).toBe('080110ffffffffffffffffff01');
    expect(parseLimit('64\n')).toBe(64);
  });
});
