/**
 * The long-lived shim daemon of one group (docs/architecture.md): serves containerd.task.v2.Task
 * for every container of the group, and containerd.runtime.sandbox.v1.Sandbox for its pod
 * sandboxes, on one socket, logs JSON into the first bundle's
 * `log` FIFO (containerd copies it into its own log), and exits once the last task is
 * deleted and Shutdown arrives.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import pino, { Logger } from 'pino';
import { RpcError, Server } from '../ttrpc';
import { Engine } from '../sandbox/engine';
import { native } from '../native/addon';
import { EventPublisher } from './events';
import type { Launch } from './launch';
import { Policy } from './policy';
import { podDirFor, SANDBOX_SERVICE, SandboxService } from './sandbox-service';
import { TASK_SERVICE, TaskService } from './task-service';

/** tsbox's private service on the daemon socket, called by the native `start`. */
const SHIM_SERVICE = 'tsbox.shim.v1.Shim';

/** How long a reservation from `start` waits for its container's Create. */
const RESERVATION_MS = 60_000;

/**
 * A pino destination into a bundle's `log` FIFO, which containerd copies into its own log.
 * It never blocks or throws: a full FIFO drops the line. With grouping, containerd stops
 * reading the first bundle's FIFO when that container goes; the sink then moves to the
 * FIFO of a container still served (`bundles`), so the daemon stays visible.
 */
class FifoLog {
  private fd: number | null = null;
  bundles: () => string[] = () => [];

  constructor(first: string) {
    this.open(first);
  }

  private open(bundle: string): boolean {
    try {
      const fd = fs.openSync(path.join(bundle, 'log'), fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
      if (this.fd !== null) fs.closeSync(this.fd);
      this.fd = fd;
      return true;
    } catch {
      return false; // ENXIO: nobody reads this FIFO (any more)
    }
  }

  write(s: string): void {
    if (this.fd !== null) {
      try {
        fs.writeSync(this.fd, s);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EPIPE') return; // EAGAIN: drop the line
      }
    }
    for (const b of this.bundles()) {
      if (!this.open(b)) continue;
      try {
        fs.writeSync(this.fd as number, s);
      } catch {
        // dropped; the next line tries again
      }
      return;
    }
  }
}

/** gc() where node runs with --expose-gc (the native front starts the daemon so). */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** Heap growth past the last collection that makes the daemon collect (bytes). */
const GC_GROWTH = 4 << 20;

/**
 * Every exec and container leaves garbage that V8 moves to its old generation and
 * collects only much later, so a busy daemon's memory climbs by tens of MB before it
 * falls. Collecting once the heap has grown by GC_GROWTH keeps it near what is really
 * held; a full collection of this small heap takes a few milliseconds.
 */
function collectGarbageWhenGrown(): void {
  let base = process.memoryUsage().heapUsed;
  setInterval(() => {
    if (process.memoryUsage().heapUsed < base + GC_GROWTH) return;
    collectGarbage();
    base = process.memoryUsage().heapUsed;
  }, 2000).unref();
}

function ownSocket(socket: string, ino: number): boolean {
  try {
    return fs.statSync(socket).ino === ino;
  } catch {
    // Removed: not ours any more either.
    return false;
  }
}

function signalReady(message: string): void {
  try {
    fs.writeSync(3, `${message}\n`);
    fs.closeSync(3);
  } catch {
    // started by hand, without the readiness pipe
  }
}

export async function serve(flags: Launch): Promise<void> {
  const bundle = path.resolve(flags.bundle || process.cwd());
  let log: Logger | null = null;
  try {
    const cfg = flags.config;
    const sink = new FifoLog(bundle);
    log = pino({ level: flags.debug ? 'debug' : cfg.logLevel, base: { pid: process.pid, runtime: 'tsbox', namespace: flags.namespace } }, sink);
    // The first bundle may be deleted while we still serve others.
    process.chdir('/');
    const engine = new Engine({ root: path.join(cfg.root, flags.namespace), logger: log });
    const events = new EventPublisher((process.env.TTRPC_ADDRESS ?? '').replace(/^unix:\/\//, ''), flags.namespace, log);
    const server = new Server(log);
    const socket = flags.socket;
    // The group's life lock, held until this process ends: while it is held no `start`
    // spawns another daemon for the group, however long this one is slow to answer.
    const lifeFd = fs.openSync(`${socket}.life`, 'a', 0o600);
    if (!native.flockTry(lifeFd)) throw new Error(`another shim daemon already serves this group (${socket}.life is locked)`);
    fs.ftruncateSync(lifeFd, 0);
    fs.writeSync(lifeFd, `${process.pid}\n`);
    // Containers on their way to us: a `start` reserved them; Create (or a timeout) ends it.
    const reservations = new Map<string, NodeJS.Timeout>();
    let exiting = false;
    let listening = 0;
    // Set under the group lock at the moment the socket goes: only from then on is a
    // Reserve refused (a start refused earlier would spawn a daemon whose socket we'd unlink).
    let closing = false;
    const idle = () => service.size === 0 && sandboxes.size === 0 && reservations.size === 0;
    const maybeExit = async (why: string) => {
      if (exiting || !idle()) return;
      exiting = true;
      try {
        // Decide under the group's start lock: a `start` either reserved before we looked
        // (we stay) or finds no socket after (it spawns a fresh daemon).
        const lockFd = fs.openSync(`${socket}.lock`, 'a', 0o600);
        try {
          await native.flockExclusive(lockFd);
          if (!idle()) {
            exiting = false;
            return;
          }
          closing = true;
          // Only our own socket: never a path another daemon serves on.
          if (ownSocket(socket, listening)) fs.rmSync(socket, { force: true });
        } finally {
          fs.closeSync(lockFd);
        }
      } catch (e) {
        exiting = false;
        log?.warn({ err: (e as Error).message }, 'could not take the group lock to exit; staying');
        return;
      }
      log?.info({ why }, 'shim daemon exiting');
      await Promise.race([server.shutdown(), new Promise((r) => setTimeout(r, 5000).unref())]);
      await events.drain(5000);
      events.close();
      process.exit(0);
    };
    const reserve = (id: string) => {
      clearTimeout(reservations.get(id));
      reservations.set(
        id,
        setTimeout(() => {
          reservations.delete(id);
          void maybeExit(`no Create for ${id} within ${RESERVATION_MS / 1000}s`);
        }, RESERVATION_MS),
      );
    };
    const release = (id: string) => {
      clearTimeout(reservations.get(id));
      reservations.delete(id);
    };
    let lingering: NodeJS.Timeout | undefined;
    const lifeHooks = {
      idle: () => {
        clearTimeout(lingering);
        lingering = setTimeout(() => void maybeExit('last task and sandbox gone'), cfg.idleTimeout * 1000);
      },
      created: release,
    };
    const service: TaskService = new TaskService(engine, events, flags.namespace, log, lifeHooks, cfg.policy ? new Policy(cfg.policy) : null, (pod) =>
      podDirFor(engine.store, pod),
    );
    const sandboxes = new SandboxService(engine, log, lifeHooks);
    server.register(SHIM_SERVICE, {
      Reserve: (payload) => {
        if (closing) throw RpcError.unavailable('shim daemon is exiting');
        reserve(Buffer.from(payload).toString());
        return new Uint8Array();
      },
      // What the daemon holds, as JSON (scripts/soak watches it for growth); asked with
      // "gc", after a full collection, so only what is really retained counts.
      Stats: (payload) => {
        if (Buffer.from(payload).toString() === 'gc') collectGarbage();
        const m = process.memoryUsage();
        const stats = {
          ...m,
          containers: service.size,
          execs: service.execCount,
          reservations: reservations.size,
          fds: fs.readdirSync('/proc/self/fd').length,
        };
        return Buffer.from(JSON.stringify(stats));
      },
    });
    reserve(flags.id);
    collectGarbageWhenGrown();
    sink.bundles = () => [...service.bundles(), ...sandboxes.bundles()];
    server.register(TASK_SERVICE, service.handlers());
    server.register(SANDBOX_SERVICE, sandboxes.handlers());
    await server.listen(socket);
    fs.chmodSync(socket, 0o600);
    listening = fs.statSync(socket).ino;
    const stop = (sig: string) => {
      log?.info({ sig }, 'shim daemon stopping on signal');
      process.exit(0);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    log.info({ socket, bundle }, 'shim daemon serving');
    signalReady('ready');
  } catch (e) {
    log?.error({ err: (e as Error).message }, 'shim daemon failed to start');
    signalReady(`error: ${(e as Error).message}`);
    process.exit(1);
  }
}
