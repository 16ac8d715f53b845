/**
 * Shim configuration: documented defaults, overridden by the TOML file named in the
 * runtime options (`runtimeoptions.v1.Options.config_path`, i.e. CRI's `ConfigPath` or
 * `ctr --runtime-config-path`). Read on the `start` path, so it stays light: protobufjs's
 * minimal reader decodes the two small messages, and TOML is parsed only if a file is named.
 */
import * as fs from 'node:fs';
import { Reader } from 'protobufjs/minimal';

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

export const RUNTIME_OPTIONS_TYPE = 'runtimeoptions.v1.Options';

/** The fields of google.protobuf.Any, or null for empty input. */
export function decodeAny(bytes: Uint8Array): { typeUrl: string; value: Uint8Array } | null {
  if (bytes.length === 0) return null;
  const r = Reader.create(bytes);
  let typeUrl = '';
  let value: Uint8Array = new Uint8Array();
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 1) typeUrl = r.string();
    else if (tag >>> 3 === 2) value = r.bytes();
    else r.skipType(tag & 7);
  }
  return { typeUrl, value };
}

/** config_path from runtimeoptions.v1.Options; other option types carry nothing for us. */
export function configPathFromOptions(any: { typeUrl: string; value: Uint8Array } | null): string | undefined {
  if (!any || any.typeUrl !== RUNTIME_OPTIONS_TYPE) return undefined;
  const r = Reader.create(any.value);
  let path = '';
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 2) path = r.string();
    else r.skipType(tag & 7);
  }
  return path || undefined;
}

export function loadConfig(path: string | undefined): ShimConfig {
  if (!path) return DEFAULT_CONFIG;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { parse } = require('smol-toml') as typeof import('smol-toml');
  let doc: Record<string, unknown>;
  try {
    doc = parse(fs.readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`tsbox config ${path}: ${(e as Error).message}`);
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

/** The daemon a container belongs to (DESIGN.md §3 "Grouping"). */
export function groupKey(grouping: Grouping, id: string, annotations: Record<string, string> | undefined): string {
  if (grouping === 'container') return `container:${id}`;
  if (grouping === 'pod') {
    const pod = annotations?.['io.containerd.runc.v2.group'] ?? annotations?.['io.kubernetes.cri.sandbox-id'];
    return pod ? `pod:${pod}` : `container:${id}`;
  }
  return 'namespace';
}
