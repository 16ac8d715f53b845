/**
 * containerd-shim-tsbox-v2: `start`, `delete`, or (no action) the daemon. Modules are
 * loaded per action so the `start` path, run for every container, stays small.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseShimFlags } from './flags';

const VERSION = '0.1.0';

export async function main(argv: string[], entry: string): Promise<number> {
  let flags;
  try {
    flags = parseShimFlags(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  if (flags.version) {
    process.stdout.write(`containerd-shim-tsbox-v2:\n  Version: ${VERSION}\n`);
    return 0;
  }
  if (!flags.namespace) {
    process.stderr.write('shim namespace cannot be empty\n');
    return 1;
  }
  switch (flags.action) {
    case 'start': {
      try {
        const { start } = await import('./bootstrap');
        process.stdout.write(await start(flags, entry));
        return 0;
      } catch (e) {
        process.stdout.write(`tsbox start: ${(e as Error).message}\n`);
        return 1;
      }
    }
    case 'delete': {
      const { cleanup } = await import('./cleanup');
      try {
        process.stdout.write(await cleanup(flags));
        return 0;
      } catch (e) {
        process.stderr.write(`tsbox delete: ${(e as Error).message}\n`);
        return 1;
      }
    }
    case '': {
      const { serve } = await import('./daemon');
      await serve(flags);
      return -1; // keep running
    }
    default:
      process.stderr.write(`unknown action ${flags.action}\n`);
      return 2;
  }
}

export function entryPath(): string {
  return fs.realpathSync(path.resolve(process.argv[1]));
}
