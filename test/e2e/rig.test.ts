/** The rig itself: a private containerd that runs the local images with the reference runtime. */
import { ctr, uniqueId } from '../rig/rig';

describe('private containerd rig', () => {
  it('runs localhost/busybox:latest with io.containerd.runc.v2', async () => {
    const id = uniqueId('smoke');
    const res = await ctr([
      'run',
      '--rm',
      '--runtime',
      'io.containerd.runc.v2',
      'localhost/busybox:latest',
      id,
      'sh',
      '-c',
      'echo hello; id -u app; grep -c . /etc/group',
    ]);
    expect(res).toMatchObject({ code: 0, stderr: '' });
    expect(res.stdout.split('\n')).toEqual(['hello', '1000', '3', '']);
  });

  it('propagates a container exit code', async () => {
    const res = await ctr(['run', '--rm', 'localhost/busybox:latest', uniqueId('exit'), 'sh', '-c', 'exit 7']);
    expect(res.code).toBe(7);
  });

  it('has both images in the CRI namespace', async () => {
    const res = await ctr(['images', 'ls', '-q'], { namespace: 'k8s.io' });
    expect(res.stdout).toContain('localhost/busybox:latest');
    expect(res.stdout).toContain('localhost/pause:3.9');
  });
});
