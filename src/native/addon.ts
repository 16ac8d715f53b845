/**
 * Typed access to the napi-rs addon (addon/crates/napi). The .node file is built by
 * `make build` into build/native; resolving it relative to this module works both from
 * src/ (tests) and dist/ (the installed daemon), which sit at the same depth.
 */
import * as path from 'node:path';

export interface NativeAddon {
  version(): string;
}

let loaded: NativeAddon | null = null;

export const ADDON_PATH = path.resolve(__dirname, '..', '..', 'build', 'native', 'index.node');

export function addon(): NativeAddon {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  loaded ??= require(ADDON_PATH) as NativeAddon;
  return loaded;
}

/** Where `make build` puts the tsbox-sandbox binary. */
export const SANDBOX_BINARY = path.resolve(__dirname, '..', '..', 'build', 'bin', 'tsbox-sandbox');
