/**
 * What the daemon code is started with. The native front (addon/crates/front) alone reads
 * containerd's command line and the config file; it hands both over, checked, as one JSON
 * document in $TSBOX_SHIM. This reads it back into types, refusing anything malformed.
 */

export type Grouping = 'namespace' | 'pod' | 'container';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** The settings of README's Configuration section (defaults: the front's `Config`). */
export interface ShimConfig {
  /** State root of the shim: engine state per namespace, daemon sockets. */
  root: string;
  grouping: Grouping;
  logLevel: LogLevel;
  /**
   * Seconds an idle daemon (no task left, Shutdown received) waits before exiting, so the
   * next container of its group does not pay for a new daemon. 0 exits at once.
   */
  idleTimeout: number;
  /** The operator's policy module (src/shim/policy.ts); "" for none. */
  policy: string;
}

export interface Launch {
  /** serve: be the group's daemon; delete: clean up what a container left. */
  action: 'serve' | 'delete';
  namespace: string;
  id: string;
  address: string;
  bundle: string;
  /** The daemon's ttrpc socket (serve). */
  socket: string;
  debug: boolean;
  config: ShimConfig;
}

const GROUPINGS: readonly string[] = ['namespace', 'pod', 'container'];
const LEVELS: readonly string[] = ['trace', 'debug', 'info', 'warn', 'error'];

export function readLaunch(json: string | undefined): Launch {
  if (!json) throw new Error('$TSBOX_SHIM is not set: the daemon code is run by containerd-shim-tsbox-v2, not by hand');
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (e) {
    throw new Error(`$TSBOX_SHIM is not JSON: ${(e as Error).message}`, { cause: e });
  }
  const obj = (v: unknown, where: string): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`$TSBOX_SHIM: ${where} must be an object`);
    return v as Record<string, unknown>;
  };
  const top = obj(doc, 'the document');
  const cfg = obj(top.config, 'config');
  const str = (o: Record<string, unknown>, k: string, allowed?: readonly string[]): string => {
    const v = o[k];
    if (typeof v !== 'string' || (allowed && !allowed.includes(v))) throw new Error(`$TSBOX_SHIM: invalid ${k} ${JSON.stringify(v)}`);
    return v;
  };
  const idleTimeout = cfg.idleTimeout;
  if (typeof idleTimeout !== 'number' || !(idleTimeout >= 0)) throw new Error(`$TSBOX_SHIM: invalid idleTimeout ${JSON.stringify(idleTimeout)}`);
  if (typeof top.debug !== 'boolean') throw new Error(`$TSBOX_SHIM: invalid debug ${JSON.stringify(top.debug)}`);
  const root = str(cfg, 'root');
  if (!root.startsWith('/')) throw new Error(`$TSBOX_SHIM: invalid root ${JSON.stringify(root)}`);
  const policy = str(cfg, 'policy');
  if (policy !== '' && !policy.startsWith('/')) throw new Error(`$TSBOX_SHIM: invalid policy ${JSON.stringify(policy)}`);
  return {
    action: str(top, 'action', ['serve', 'delete']) as Launch['action'],
    namespace: str(top, 'namespace'),
    id: str(top, 'id'),
    address: str(top, 'address'),
    bundle: str(top, 'bundle'),
    socket: str(top, 'socket'),
    debug: top.debug,
    config: { root, grouping: str(cfg, 'grouping', GROUPINGS) as Grouping, logLevel: str(cfg, 'logLevel', LEVELS) as LogLevel, idleTimeout, policy },
  };
}
