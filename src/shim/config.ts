/**
 * Shim configuration: documented defaults, overridden by the TOML file named in the
 * runtime options (`runtimeoptions.v1.Options.config_path`, i.e. CRI's `ConfigPath` or
 * `ctr --runtime-config-path`) or $TSBOX_CONFIG. The native `start` finds the file and
 * hands its path to the daemon as $TSBOX_CONFIG; the daemon validates all of it.
 */
import * as fs from 'node:fs';

export type Grouping = 'namespace' | 'pod' | 'container';

export interface ShimConfig {
  /** State root of the shim: engine state per namespace, daemon sockets. */
  root: string;
  grouping: Grouping;
  logLevel: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /**
   * Seconds an idle daemon (no task left, Shutdown received) waits before exiting, so the
   * next container of its group does not pay for a new daemon. 0 exits at once.
   */
  idleTimeout: number;
}

export const DEFAULT_CONFIG: ShimConfig = { root: '/run/tsbox/containerd', grouping: 'namespace', logLevel: 'info', idleTimeout: 10 };

export function loadConfig(path: string | undefined): ShimConfig {
  if (!path) return DEFAULT_CONFIG;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { parse } = require('smol-toml') as typeof import('smol-toml');
  let doc: Record<string, unknown>;
  try {
    doc = parse(fs.readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`tsbox config ${path}: ${(e as Error).message}`, { cause: e });
  }
  const cfg: ShimConfig = { ...DEFAULT_CONFIG };
  for (const [k, v] of Object.entries(doc)) {
    if (k === 'root' && typeof v === 'string' && v.startsWith('/')) cfg.root = v;
    else if (k === 'grouping' && (v === 'namespace' || v === 'pod' || v === 'container')) cfg.grouping = v;
    else if (k === 'log_level' && typeof v === 'string' && ['trace', 'debug', 'info', 'warn', 'error'].includes(v)) cfg.logLevel = v as ShimConfig['logLevel'];
    else if (k === 'idle_timeout' && typeof v === 'number' && v >= 0) cfg.idleTimeout = v;
    else throw new Error(`tsbox config ${path}: invalid setting ${k} = ${JSON.stringify(v)}`);
  }
  return cfg;
}
