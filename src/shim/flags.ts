/**
 * The command line containerd gives a shim (docs/protocol.md): Go `flag` style, so
 * `-flag value`, `-flag=value` and `--flag` all count; the first positional word is the
 * action (`start`, `delete`), none means "serve".
 */

export interface ShimFlags {
  namespace: string;
  id: string;
  address: string;
  bundle: string;
  socket: string;
  debug: boolean;
  version: boolean;
  action: string;
}

// -publish-binary and -debug-socket are accepted and ignored: events go to containerd over
// ttrpc on $TTRPC_ADDRESS (events.ts), not through a publish binary.
const STRING_FLAGS = new Set(['namespace', 'id', 'address', 'publish-binary', 'bundle', 'socket', 'debug-socket']);
const BOOL_FLAGS = new Set(['debug', 'v', 'version', 'info']);

export function parseShimFlags(argv: string[]): ShimFlags {
  const values = new Map<string, string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('-') || a === '-' || a === '--') {
      positional.push(...(a === '--' ? argv.slice(i + 1) : argv.slice(i)));
      break;
    }
    const body = a.replace(/^--?/, '');
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    if (BOOL_FLAGS.has(name)) values.set(name, eq >= 0 ? body.slice(eq + 1) : 'true');
    else if (STRING_FLAGS.has(name)) values.set(name, eq >= 0 ? body.slice(eq + 1) : (argv[++i] ?? ''));
    else throw new Error(`flag provided but not defined: -${name}`);
  }
  const bool = (n: string) => values.has(n) && values.get(n) !== 'false';
  return {
    namespace: values.get('namespace') ?? '',
    id: values.get('id') ?? '',
    address: values.get('address') ?? '',
    bundle: values.get('bundle') ?? '',
    socket: values.get('socket') ?? '',
    debug: bool('debug'),
    version: bool('v') || bool('version'),
    action: positional[0] ?? '',
  };
}
