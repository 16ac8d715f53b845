/**
 * The v2 driver on the host's real cgroup2 mount. On the rig's hybrid host that mount has
 * no resource controllers, so this covers what v2 always has: directories, membership,
 * the freezer and stats reading; limits are covered by the unit tests of their formats.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { parseMountinfo } from '../../src/sandbox/cgroups';
import { V2Driver } from '../../src/sandbox/cgroups/v2';
import { uniqueId } from './bundle';

const unified = parseMountinfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')).filter((h) => h.version === 2);
describe('cgroup v2 driver on the real cgroup2 mount', () => {
  it('creates a cgroup, freezes and thaws its process, reads stats, removes it', async () => {
    expect(unified.length).toBeGreaterThan(0); // the rig's hosts mount cgroup2 (hybrid or unified)
    const m = new V2Driver(unified);
    expect(m.version).toBe(2);
    const rec = m.create(`/tsbox-test-v2/${uniqueId('v2')}`, undefined);
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      fs.writeFileSync(m.procsFiles(rec)[0], String(child.pid));
      expect(m.pids(rec)).toEqual([child.pid]);
      await m.freeze(rec, true);
      expect(fs.readFileSync(`${rec.dirs[0].dir}/cgroup.events`, 'utf8')).toMatch(/frozen 1/);
      expect(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8')).toMatch(/State:\s+S/);
      await m.freeze(rec, false);
      expect(fs.readFileSync(`${rec.dirs[0].dir}/cgroup.events`, 'utf8')).toMatch(/frozen 0/);
      const s = m.stats(rec);
      expect(s.version).toBe(2);
    } finally {
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
    }
    expect(await m.remove(rec)).toEqual([]);
    expect(fs.existsSync(rec.dirs[0].dir)).toBe(false);
  });

  it("enforces the container's device rules with an eBPF filter, replaced on update", async () => {
    const m = new V2Driver(unified);
    const rec = m.create(`/tsbox-test-v2/${uniqueId('dev')}`, { devices: [{ allow: false, access: 'rwm' }] });
    // A process in the cgroup opening a node: the defaults allow /dev/null, not /dev/kmsg.
    const open = (dev: string) => spawnSync('sh', ['-c', `echo $$ > ${m.procsFiles(rec)[0]} && : < ${dev}`], { encoding: 'utf8' });
    try {
      expect(open('/dev/null').status).toBe(0);
      const kmsg = open('/dev/kmsg');
      expect(kmsg.status).not.toBe(0);
      expect(kmsg.stderr).toMatch(/Operation not permitted/);
      m.apply(rec, {
        devices: [
          { allow: false, access: 'rwm' },
          { allow: true, type: 'c', major: 1, minor: 11, access: 'r' },
        ],
      });
      expect(open('/dev/kmsg').status).toBe(0);
    } finally {
      expect(await m.remove(rec)).toEqual([]);
    }
  });
});
