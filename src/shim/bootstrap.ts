/**
 * The two short-lived shim commands containerd runs (PROTOCOL.md §1.4, §1.5):
 *   start  — find or spawn the daemon of this container's group, print its address;
 *   delete — clean up one container when the daemon cannot (or after it did).
 * `start` runs for every container, so it loads as little as possible: no protobuf
 * runtime, no logger, no engine.
 */
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Reader, Writer } from 'protobufjs/minimal';
import { native } from '../native/addon';
import { encodeFrame, FrameDecoder, MessageType } from '../ttrpc/frame';
import { configPathFromOptions, decodeAny, groupKey, loadConfig, ShimConfig } from './config';
import type { ShimFlags } from './flags';

/** Unix socket path of a group's daemon: short enough for sun_path whatever the inputs. */
export function daemonSocket(cfg: ShimConfig, flags: ShimFlags, group: string): string {
  const hash = crypto.createHash('sha256').update(`${flags.address}\0${flags.namespace}\0${group}`).digest('hex').slice(0, 32);
  return path.join(cfg.root, 's', hash);
}

export const SHIM_SERVICE = 'tsbox.shim.v1.Shim';

/**
 * Asks a group's daemon to keep serving: it reserves `id` (until that container's Create
 * or a timeout) so a Shutdown racing with this start cannot make it exit. One ttrpc call,
 * encoded with protobufjs's minimal writer to keep the start path light. False when no
 * daemon answers (none, or one already on its way out).
 */
export function reserve(sock: string, id: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.createConnection(sock);
    const done = (ok: boolean) => {
      c.destroy();
      resolve(ok);
    };
    const request = Writer.create().uint32(10).string(SHIM_SERVICE).uint32(18).string('Reserve').uint32(26).bytes(Buffer.from(id)).finish();
    c.once('connect', () => c.write(encodeFrame(1, MessageType.Request, 0, request)));
    const decoder = new FrameDecoder();
    c.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        if (f.kind !== 'frame') return done(false);
        // A Response with a status (field 1) is an error; an empty one or payload-only is OK.
        const r = Reader.create(f.data);
        let failed = false;
        while (r.pos < r.len) {
          const tag = r.uint32();
          if (tag >>> 3 === 1) failed = true;
          r.skipType(tag & 7);
        }
        done(!failed);
      }
    });
    c.once('error', () => done(false));
    c.once('close', () => done(false));
  });
}

function writeAtomic(file: string, data: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode: 0o644 });
  fs.renameSync(tmp, file);
}

/** The config file: named in the runtime options on stdin, else $TSBOX_CONFIG, else none. */
export function readConfigPath(): string | undefined {
  let raw: Buffer;
  try {
    raw = fs.readFileSync(0);
  } catch {
    raw = Buffer.alloc(0);
  }
  return configPathFromOptions(decodeAny(raw)) ?? (process.env.TSBOX_CONFIG || undefined);
}

/** Spawns the daemon detached, stdio on /dev/null, and waits for "ready" on fd 3. */
function spawnDaemon(flags: ShimFlags, sock: string, bundle: string, configPath: string | undefined, entry: string): Promise<void> {
  const args = [entry, '-namespace', flags.namespace, '-id', flags.id, '-address', flags.address, '-socket', sock];
  if (flags.debug) args.push('-debug');
  const env = { ...process.env, ...(configPath ? { TSBOX_CONFIG: configPath } : {}) };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: bundle, detached: true, env, stdio: ['ignore', 'ignore', 'ignore', 'pipe'] });
    let out = '';
    const ready = child.stdio[3];
    if (!ready) {
      reject(new Error('daemon: no readiness pipe'));
      return;
    }
    ready.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.startsWith('ready\n')) {
        ready.destroy();
        child.unref();
        resolve();
      } else if (out.includes('\n')) {
        reject(new Error(`daemon failed to start: ${out.trim()}`));
      }
    });
    child.once('exit', (code, sig) => reject(new Error(`daemon exited (${code ?? sig}) before it was ready${out ? `: ${out.trim()}` : ''}`)));
    child.once('error', (e) => reject(e));
  });
}

export async function start(flags: ShimFlags, entry: string): Promise<string> {
  const bundle = flags.bundle || process.cwd();
  const configPath = readConfigPath();
  const cfg = loadConfig(configPath);
  let annotations: Record<string, string> | undefined;
  try {
    annotations = (JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8')) as { annotations?: Record<string, string> }).annotations;
  } catch {
    annotations = undefined;
  }
  const sock = daemonSocket(cfg, flags, groupKey(cfg.grouping, flags.id, annotations));
  fs.mkdirSync(path.dirname(sock), { recursive: true, mode: 0o711 });
  // One start at a time per group decides whether a daemon must be spawned.
  const lockFd = fs.openSync(`${sock}.lock`, 'a', 0o600);
  try {
    await native.flockExclusive(lockFd);
    if (!(await reserve(sock, flags.id))) {
      fs.rmSync(sock, { force: true });
      await spawnDaemon(flags, sock, bundle, configPath, entry);
    }
  } finally {
    fs.closeSync(lockFd);
  }
  const address = `unix://${sock}`;
  writeAtomic(path.join(bundle, 'address'), address);
  return address;
}
