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
import { POD_SANDBOX_ANNOTATION } from '../oci/pod';
import { unmountRootfs } from './rootfs';
import { removePodFiles } from './sandbox-service';

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
  let pod = false;
  try {
    const rec = engine.store.read(flags.id);
    pid = rec.pid;
    pod = rec.annotations?.[POD_SANDBOX_ANNOTATION] === 'true';
    await engine.delete(flags.id, true);
  } catch {
    // not known to the engine (any more)
  }
  unmountRootfs(path.join(bundle, 'rootfs'));
  // A pod sandbox whose daemon died: its shared files and /dev/shm are the runtime's own.
  if (pod) removePodFiles(bundle);
  return containerd.task.v2.DeleteResponse.encode({ pid, exitStatus: 137, exitedAt: timestamp() }).finish();
}
