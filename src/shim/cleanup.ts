/**
 * The `delete` action (docs/protocol.md): containerd runs it after every task removal and
 * whenever a shim died. For this container only: kill what is left, remove its sandbox,
 * cgroup and state, unmount its rootfs; never touch the bundle itself. Everything already
 * gone is fine. Prints a DeleteResponse.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { containerd, timestamp } from '../proto';
import { Engine } from '../sandbox/engine';
import type { Launch } from './launch';
import { unmountRootfs } from './rootfs';

export async function cleanup(flags: Launch): Promise<Uint8Array> {
  const bundle = path.resolve(flags.bundle || process.cwd());
  let root = path.join(flags.config.root, flags.namespace);
  try {
    root = (JSON.parse(fs.readFileSync(path.join(bundle, 'tsbox.json'), 'utf8')) as { root: string }).root;
  } catch {
    // Create never got that far: the default root is the only place to look.
  }
  const engine = new Engine({ root });
  let pid = 0;
  try {
    pid = engine.store.read(flags.id).pid;
    await engine.delete(flags.id, true);
  } catch {
    // not known to the engine (any more)
  }
  unmountRootfs(path.join(bundle, 'rootfs'));
  return containerd.task.v2.DeleteResponse.encode({ pid, exitStatus: 137, exitedAt: timestamp() }).finish();
}
