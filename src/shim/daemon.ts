/**
 * The long-lived shim daemon of one group (DESIGN.md §3): serves containerd.task.v2.Task
 * for every container of the group on one socket, logs JSON into the first bundle's
 * `log` FIFO (containerd copies it into its own log), and exits once the last task is
 * deleted and Shutdown arrives.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import pino, { Logger } from 'pino';
import { Server } from '../ttrpc';
import { Engine } from '../sandbox/engine';
import { native } from '../native/addon';
import { loadConfig } from './config';
import { EventPublisher } from './events';
import type { ShimFlags } from './flags';
import { TASK_SERVICE, TaskService } from './task-service';

/** A pino destination that never blocks or throws: a full or readerless FIFO drops lines. */
function fifoDestination(file: string): { write(s: string): void } {
  let fd: number | null = null;
  try {
    fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  } catch {
    fd = null;
  }
  return {
    write(s: string) {
      if (fd === null) return;
      try {
        fs.writeSync(fd, s);
      } catch {
        // EAGAIN (containerd not reading) or EPIPE (it went away): drop the line.
      }
    },
  };
}

function signalReady(message: string): void {
  try {
    fs.writeSync(3, `${message}\n`);
    fs.closeSync(3);
  } catch {
    // started by hand, without the readiness pipe
  }
}

export async function serve(flags: ShimFlags): Promise<void> {
  const bundle = path.resolve(flags.bundle || process.cwd());
  let log: Logger | null = null;
  try {
    const cfg = loadConfig(process.env.TSBOX_CONFIG);
    log = pino({ level: flags.debug ? 'debug' : cfg.logLevel, base: { pid: process.pid, runtime: 'tsbox', namespace: flags.namespace } }, fifoDestination(path.join(bundle, 'log')));
    // The first bundle may be deleted while we still serve others.
    process.chdir('/');
    const engine = new Engine({ root: path.join(cfg.root, flags.namespace), logger: log });
    const events = new EventPublisher((process.env.TTRPC_ADDRESS ?? '').replace(/^unix:\/\//, ''), flags.namespace, log);
    const server = new Server(log);
    const socket = flags.socket;
    let exiting = false;
    const exit = async (why: string) => {
      if (exiting) return;
      exiting = true;
      log?.info({ why }, 'shim daemon exiting');
      // Socket first, under the group's start lock: a new `start` spawns a fresh daemon
      // rather than attaching to this one.
      const lockFd = fs.openSync(`${socket}.lock`, 'a', 0o600);
      try {
        await native.flockExclusive(lockFd);
        fs.rmSync(socket, { force: true });
      } finally {
        fs.closeSync(lockFd);
      }
      await Promise.race([server.shutdown(), new Promise((r) => setTimeout(r, 5000).unref())]);
      await events.drain(5000);
      events.close();
      process.exit(0);
    };
    const service = new TaskService(engine, events, flags.namespace, log, () => {
      if (service.size === 0) void exit('last task deleted and Shutdown received');
    });
    server.register(TASK_SERVICE, service.handlers());
    await server.listen(socket);
    fs.chmodSync(socket, 0o600);
    process.on('SIGTERM', () => void exit('SIGTERM'));
    process.on('SIGINT', () => void exit('SIGINT'));
    log.info({ socket, bundle }, 'shim daemon serving');
    signalReady('ready');
  } catch (e) {
    log?.error({ err: (e as Error).message }, 'shim daemon failed to start');
    signalReady(`error: ${(e as Error).message}`);
    process.exit(1);
  }
}
