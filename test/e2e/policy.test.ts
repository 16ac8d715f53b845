/**
 * The policy hook through ctr: a shim whose config names a policy module refuses, changes
 * or allows what containerd asks for, and ctr shows the reason.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ctr, PROJECT_ROOT, removeTask, rig, taskStatus, uniqueId, waitUntil } from '../rig/rig';

const IMAGE = 'localhost/busybox:latest';
const EXAMPLE = path.join(PROJECT_ROOT, 'examples', 'policy.js');

/** A shim config of its own under the rig: the same root, this policy. */
function configWith(policy: string): string {
  const file = path.join(rig().dir, `${uniqueId('policy')}.toml`);
  fs.writeFileSync(file, `root = "${path.join(rig().dir, 'tsbox')}"\nidle_timeout = 1\npolicy = "${policy}"\n`);
  return file;
}

const tsbox = (config: string) => ['--runtime', 'io.containerd.tsbox.v2', '--runtime-config-path', config];

describe('policy = "…" in the shim config', () => {
  it("refuses a privileged container with the example policy's reason, and hardens the others", async () => {
    const config = configWith(EXAMPLE);
    const id = uniqueId('pol');
    const denied = await ctr(['run', '--rm', ...tsbox(config), '--privileged', IMAGE, id, 'true']);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain(`policy ${EXAMPLE} denied container ${id}: privileged containers (CAP_SYS_ADMIN) are not allowed`);
    expect(await taskStatus(id)).toBeUndefined();
    await ctr(['container', 'rm', id]);

    const r = await ctr(['run', '--rm', ...tsbox(config), IMAGE, uniqueId('pol'), 'sh', '-c', 'touch /x 2>&1; grep NoNewPrivs /proc/self/status']);
    expect(r).toEqual({ code: 0, stdout: 'touch: /x: Read-only file system\nNoNewPrivs:\t1\n', stderr: '' });
  });

  it('sees every exec, and a changed policy file at the next request', async () => {
    const file = path.join(rig().dir, `${uniqueId('policy')}.js`);
    fs.writeFileSync(file, `module.exports = (r) => (r.kind === 'exec' && r.process.args[0] === 'nc' ? { deny: 'no nc in ' + r.id } : undefined);\n`);
    const config = configWith(file);
    const id = uniqueId('pol');
    expect((await ctr(['run', '-d', ...tsbox(config), IMAGE, id, 'sleep', '600'])).code).toBe(0);
    try {
      expect(await ctr(['task', 'exec', '--exec-id', 'e1', id, 'sh', '-c', 'exit 3'])).toMatchObject({ code: 3 });
      const nc = await ctr(['task', 'exec', '--exec-id', 'e2', id, 'nc', '-h']);
      expect([nc.code, nc.stderr]).toEqual([1, expect.stringContaining(`policy ${file} denied exec e2 in container ${id}: no nc in ${id}`)]);
      fs.writeFileSync(file, `module.exports = (r) => (r.kind === 'exec' ? { deny: 'execs are off' } : undefined);\n`);
      const off = await ctr(['task', 'exec', '--exec-id', 'e3', id, 'true']);
      expect([off.code, off.stderr]).toEqual([1, expect.stringContaining(`denied exec e3 in container ${id}: execs are off`)]);
      await waitUntil(async () => (await taskStatus(id)) === 'RUNNING', `${id} still running`);
    } finally {
      await removeTask(id);
    }
  });
});
