/** `tsbox top`'s table: units, CPU as time or as a share of a core between refreshes. */
import { formatTop, type TopRow } from '../../src/cli/top';

const row = (over: Partial<TopRow>): TopRow => ({
  namespace: 'default',
  id: 'c1',
  status: 'running',
  pid: 100,
  sandboxPid: 99,
  daemonPid: 98,
  cgroup: '/default/c1',
  memoryBytes: 3 * 1048576,
  cpuSeconds: 1.5,
  uptimeSeconds: 3725,
  execs: 2,
  ...over,
});

describe('formatTop', () => {
  it('prints one aligned line per container, CPU as time used', () => {
    const out = formatTop([
      row({}),
      row({
        namespace: '',
        id: 'cli-one',
        status: 'stopped',
        pid: null,
        sandboxPid: null,
        daemonPid: null,
        memoryBytes: null,
        cpuSeconds: null,
        uptimeSeconds: 59,
        execs: 0,
      }),
    ]);
    expect(out.split('\n')).toEqual([
      'NAMESPACE  ID       STATUS   PID  SANDBOX  DAEMON  MEM   CPU    UPTIME  EXECS  CGROUP',
      'default    c1       running  100  99       98      3.0M  1.50s  1h2m    2      /default/c1',
      '-          cli-one  stopped  -    -        -       -     -      59s     0      /default/c1',
      '',
    ]);
  });

  it('turns CPU time into a share of one core against the previous refresh', () => {
    const out = formatTop([row({ cpuSeconds: 2.5 }), row({ id: 'new', cpuSeconds: 0.25 })], { rows: [row({ cpuSeconds: 1.5 })], elapsed: 2 });
    expect(out).toMatch(/^default\s+c1\s.*\s50\.0%\s/m);
    expect(out).toMatch(/^default\s+new\s.*\s0\.25s\s/m); // not seen before: time used
  });
});
