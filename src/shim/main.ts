/**
 * The Node half of containerd-shim-tsbox-v2. The native front (addon/crates/front)
 * answers `start` and the common `delete` itself and runs this for the rest:
 *   (no action)  the daemon;
 *   delete       the full cleanup, when something of the container is left.
 */
import { parseShimFlags } from './flags';

export async function main(argv: string[]): Promise<number> {
  let flags;
  try {
    flags = parseShimFlags(argv);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  if (!flags.namespace) {
    process.stderr.write('shim namespace cannot be empty\n');
    return 1;
  }
  switch (flags.action) {
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
      process.stderr.write(`unknown action ${flags.action} (start is answered by the native front)\n`);
      return 2;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    if (code >= 0) process.exit(code);
  });
}
