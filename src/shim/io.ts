/**
 * A process's stdio as containerd describes it (docs/protocol.md): FIFO paths, `file://`,
 * `binary://` loggers, a terminal, or nothing.
 *
 * Without a terminal tsbox copies nothing: the container gets the FIFO (or file, or
 * logger pipe) itself, so output flows at kernel speed and costs the daemon no buffers.
 * The daemon holds what runc-v2 holds to keep the FIFOs usable across client detach: a
 * read handle on each output FIFO (writes never fail with EPIPE) and a write handle on
 * the stdin FIFO (the reader sees EOF only after CloseIO and the client's close).
 *
 * With a terminal the container opens its own pty and sends the master over a console
 * socket; the daemon copies stdin FIFO → master → stdout FIFO.
 */
import { spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import * as tty from 'node:tty';
import { native } from '../native/addon';

const { O_RDONLY, O_WRONLY, O_NONBLOCK, O_APPEND, O_CREAT } = fs.constants;

export interface IOSpec {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

export class ProcessIO {
  /** fds the process gets (closed here once the process has them). */
  containerFds: number[] = [];
  /** Held for the process's life; see the module comment. */
  private holders: number[] = [];
  private stdinHolder: number | null = null;
  private consoleEnd: number | null = null;
  private master: number | null = null;
  private streams: (net.Socket | tty.ReadStream | tty.WriteStream)[] = [];
  /** Terminal mode: the copy from the stdin FIFO into the pty. */
  private stdinCopy: net.Socket | null = null;
  private logger: ChildProcess | null = null;
  private outputDone: Promise<void> = Promise.resolve();

  constructor(readonly spec: IOSpec) {}

  static async open(spec: IOSpec, env: { id: string; namespace: string }): Promise<ProcessIO> {
    const io = new ProcessIO(spec);
    try {
      await io.setup(env);
    } catch (e) {
      io.close();
      throw e;
    }
    return io;
  }

  private openNull(): number {
    const fd = fs.openSync('/dev/null', 'r+');
    this.containerFds.push(fd);
    return fd;
  }

  /** The read side of the stdin FIFO for the process, plus our write handle on it. */
  private openStdin(p: string): number {
    const rd = fs.openSync(p, O_RDONLY | O_NONBLOCK);
    this.stdinHolder = fs.openSync(p, O_WRONLY | O_NONBLOCK);
    native.setNonblocking(rd, false);
    return rd;
  }

  /** A blocking write fd on an output FIFO for the process, plus our read handle. */
  private openOutput(p: string): number {
    this.holders.push(fs.openSync(p, O_RDONLY | O_NONBLOCK));
    const wr = fs.openSync(p, O_WRONLY | O_NONBLOCK);
    native.setNonblocking(wr, false);
    return wr;
  }

  private async setup(env: { id: string; namespace: string }): Promise<void> {
    const { stdin, stdout, stderr, terminal } = this.spec;
    const scheme = /^([a-z]+):\/\//.exec(stdout)?.[1];
    if (terminal) {
      const [mine, theirs] = native.socketpair();
      this.consoleEnd = mine;
      this.containerFds = [theirs];
      return;
    }
    const inFd = stdin ? this.openStdin(stdin) : this.openNull();
    if (inFd !== this.containerFds[0]) this.containerFds.push(inFd);
    if (scheme === 'file') {
      const file = decodeURIComponent(new URL(stdout).pathname);
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
      const fd = fs.openSync(file, O_WRONLY | O_APPEND | O_CREAT, 0o644);
      this.containerFds.push(fd, fd);
      return;
    }
    if (scheme === 'binary') {
      await this.startLogger(new URL(stdout), env);
      return;
    }
    if (scheme) throw new Error(`unknown STDIO scheme ${scheme}`);
    const outFd = stdout ? this.openOutput(stdout) : this.openNull();
    this.containerFds.push(outFd);
    if (!stderr) this.containerFds.push(this.openNull());
    else if (stderr === stdout) this.containerFds.push(outFd);
    else this.containerFds.push(this.openOutput(stderr));
  }

  /** A `binary://` logger: fd 3 stdout, fd 4 stderr, fd 5 "ready" (docs/protocol.md). */
  private async startLogger(uri: URL, env: { id: string; namespace: string }): Promise<void> {
    const args: string[] = [];
    for (const [k, v] of uri.searchParams) args.push(k, v);
    const [outR, outW] = native.pipe();
    const [errR, errW] = native.pipe();
    const [readyR, readyW] = native.pipe();
    this.containerFds.push(outW, errW);
    const child = spawn(decodeURIComponent(uri.pathname), args, {
      env: { ...process.env, CONTAINER_ID: env.id, CONTAINER_NAMESPACE: env.namespace },
      stdio: ['ignore', 'ignore', 'ignore', outR, errR, readyW],
      detached: true,
    });
    this.logger = child;
    [outR, errR, readyW].forEach((fd) => fs.closeSync(fd));
    await new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      fs.read(readyR, Buffer.alloc(1), 0, 1, null, () => {
        fs.closeSync(readyR);
        resolve();
      });
    });
  }

  /** After the process was created or exec'd: drop our copies of its fds, take the pty master, start copying. */
  attach(): void {
    this.discardContainerFds();
    if (this.consoleEnd === null) return;
    const master = native.recvFd(this.consoleEnd);
    fs.closeSync(this.consoleEnd);
    this.consoleEnd = null;
    // Streams close their fd when the pty hangs up; resizing keeps a descriptor of its own.
    this.master = native.dup(master);
    const reader = new tty.ReadStream(master);
    const writer = new tty.WriteStream(native.dup(master));
    this.streams.push(reader, writer);
    writer.on('error', () => undefined);
    if (this.spec.stdin) {
      const inFd = fs.openSync(this.spec.stdin, O_RDONLY | O_NONBLOCK);
      this.stdinHolder = fs.openSync(this.spec.stdin, O_WRONLY | O_NONBLOCK);
      const input = new net.Socket({ fd: inFd, readable: true, writable: false });
      input.on('error', () => undefined);
      input.pipe(writer, { end: false });
      this.streams.push(input);
      this.stdinCopy = input;
    }
    if (this.spec.stdout) {
      this.holders.push(fs.openSync(this.spec.stdout, O_RDONLY | O_NONBLOCK));
      const out = new net.Socket({ fd: fs.openSync(this.spec.stdout, O_WRONLY | O_NONBLOCK), readable: false, writable: true });
      out.on('error', () => undefined);
      this.streams.push(out);
      this.outputDone = new Promise<void>((resolve) => {
        // EIO on the master is the pty's end-of-file: every slave fd is closed.
        reader.once('error', () => resolve());
        reader.once('end', () => resolve());
        reader.once('close', () => resolve());
      });
      reader.on('error', () => undefined);
      reader.pipe(out, { end: false });
    } else {
      reader.on('error', () => undefined);
      reader.resume();
    }
  }

  /** Closes only the creation-time fds (a failed create). */
  discardContainerFds(): void {
    for (const fd of new Set(this.containerFds)) fs.closeSync(fd);
    this.containerFds = [];
  }

  resize(width: number, height: number): void {
    if (this.master !== null && width > 0 && height > 0) native.setWinsize(this.master, width, height);
  }

  /** CloseIO: let EOF reach the process once the client has closed its end too. */
  closeStdin(): void {
    if (this.stdinHolder !== null) fs.closeSync(this.stdinHolder);
    this.stdinHolder = null;
    this.stdinCopy?.destroy();
    this.stdinCopy = null;
  }

  /** Resolves when a terminal's output has been copied out (at most `ms` after exit). */
  drained(ms: number): Promise<void> {
    return Promise.race([this.outputDone, new Promise<void>((r) => setTimeout(r, ms).unref())]);
  }

  close(): void {
    this.discardContainerFds();
    for (const s of this.streams) s.destroy();
    this.streams = [];
    for (const fd of this.holders) fs.closeSync(fd);
    this.holders = [];
    if (this.stdinHolder !== null) fs.closeSync(this.stdinHolder);
    this.stdinHolder = null;
    if (this.consoleEnd !== null) fs.closeSync(this.consoleEnd);
    this.consoleEnd = null;
    if (this.master !== null) fs.closeSync(this.master);
    this.master = null;
    const logger = this.logger;
    if (logger && logger.exitCode === null) {
      logger.kill('SIGTERM');
      setTimeout(() => logger.exitCode === null && logger.kill('SIGKILL'), 12000).unref();
      logger.unref();
    }
  }
}
