/**
 * Typed access to the napi-rs addon (addon/crates/napi). The .node file is built by
 * `make build` into build/native; resolving it relative to this module works both from
 * src/ (tests) and dist/ (the installed daemon), which sit at the same depth.
 */
import * as path from 'node:path';

interface RawAddon {
  version(): string;
  unixConnect(path: string): number;
  sendWithFds(sock: number, data: Buffer, fds: number[]): number;
  openpty(): { master: number; slave: number };
  socketpair(): number[];
  pipe(): number[];
  dup(fd: number): number;
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount2(target: string, flags: number): void;
  setNonblocking(fd: number, on: boolean): void;
  recvFd(sock: number): number;
  setWinsize(fd: number, cols: number, rows: number): void;
  flockExclusive(fd: number): Promise<unknown>;
  pidfdOpen(pid: number): number;
  pidfdSendSignal(pidfd: number, signal: number): void;
}

export const ADDON_PATH = path.resolve(__dirname, '..', '..', 'build', 'native', 'index.node');

/** Where `make build` puts the tsbox-sandbox binary. */
export const SANDBOX_BINARY = path.resolve(__dirname, '..', '..', 'build', 'bin', 'tsbox-sandbox');

let raw: RawAddon | null = null;

function load(): RawAddon {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  raw ??= require(ADDON_PATH) as RawAddon;
  return raw;
}

/** The addon reports failures as "ERRNO|step: ERRNO"; make that a Node-style error. */
function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw nodeError(e);
  }
}

function nodeError(e: unknown): NodeJS.ErrnoException {
  const msg = e instanceof Error ? e.message : String(e);
  const bar = msg.indexOf('|');
  const err: NodeJS.ErrnoException = new Error(bar >= 0 ? msg.slice(bar + 1) : msg);
  if (bar >= 0) err.code = msg.slice(0, bar);
  return err;
}

export const native = {
  version: (): string => load().version(),
  unixConnect: (p: string): number => call(() => load().unixConnect(p)),
  sendWithFds: (sock: number, data: Buffer, fds: number[]): number => call(() => load().sendWithFds(sock, data, fds)),
  openpty: (): { master: number; slave: number } => call(() => load().openpty()),
  socketpair: (): [number, number] => call(() => load().socketpair()) as [number, number],
  recvFd: (sock: number): number => call(() => load().recvFd(sock)),
  pipe: (): [number, number] => call(() => load().pipe()) as [number, number],
  dup: (fd: number): number => call(() => load().dup(fd)),
  mount: (source: string, target: string, fstype: string, flags: number, data: string): void =>
    call(() => load().mount(source, target, fstype, flags, data)),
  umount2: (target: string, flags: number): void => call(() => load().umount2(target, flags)),
  setNonblocking: (fd: number, on: boolean): void => call(() => load().setNonblocking(fd, on)),
  setWinsize: (fd: number, cols: number, rows: number): void => call(() => load().setWinsize(fd, cols, rows)),
  flockExclusive: async (fd: number): Promise<void> => {
    try {
      await load().flockExclusive(fd);
    } catch (e) {
      throw nodeError(e);
    }
  },
  pidfdOpen: (pid: number): number => call(() => load().pidfdOpen(pid)),
  pidfdSendSignal: (pidfd: number, signal: number): void => call(() => load().pidfdSendSignal(pidfd, signal)),
};
