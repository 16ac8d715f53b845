/**
 * The Node half of containerd-shim-tsbox-v2. The native front (addon/crates/front)
 * answers `start` and the common `delete` itself and runs this, with $TSBOX_SHIM
 * (src/shim/launch.ts), for the rest:
 *   serve   the group's daemon (spawned by `start`);
 *   delete  the full cleanup, when something of the container is left.
 */
import { readLaunch, type Launch } from './launch';

export async function main(env: NodeJS.ProcessEnv): Promise<number> {
  let launch: Launch;
  try {
    launch = readLaunch(env.TSBOX_SHIM);
  } catch (e) {
    process.stderr.write(`containerd-shim-tsbox-v2: ${(e as Error).message}\n`);
    return 2;
  }
  // Not for the processes the daemon starts.
  delete env.TSBOX_SHIM;
  if (launch.action === 'delete') {
    const { cleanup } = await import('./cleanup');
    try {
      process.stdout.write(await cleanup(launch));
      return 0;
    } catch (e) {
      process.stderr.write(`tsbox delete: ${(e as Error).message}\n`);
      return 1;
    }
  }
  const { serve } = await import('./daemon');
  await serve(launch);
  return -1; // keep running
}
