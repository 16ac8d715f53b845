/**
 * Container metadata on disk: `<root>/<id>/meta.json`, written atomically (tmp + fsync +
 * rename) after every change, changes serialized by an flock on `<root>/<id>/lock`
 * (taken on a libuv worker thread, so waiting never blocks the event loop).
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../native/addon';
import { EngineError } from './errors';
import { validateId } from './ids';
import type { CgroupRecord } from './cgroups';
import type { Status } from './status';

export interface ContainerRecord {
  id: string;
  bundle: string;
  status: Status;
  /** Host pid of the container's init (0 before it exists). */
  pid: number;
  /** /proc/<pid>/stat start time, to tell our process from a reused pid. */
  pidStartTime: string | null;
  sandboxPid: number;
  sandboxStartTime: string | null;
  /** The tsbox-sandbox control socket serving this container. */
  socket: string;
  createdAt: string;
  owner: string;
  ociVersion: string;
  annotations: Record<string, string>;
  cgroup: CgroupRecord | null;
  exitStatus: number | null;
  exitedAt: string | null;
}

/** Field 22 of /proc/<pid>/stat (after the parenthesised comm, which may hold spaces). */
export function procStartTime(pid: number): string | null {
  if (!pid) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    // No such process: no start time, so it can never pass for the one we recorded.
    return null;
  }
}

/** True when `pid` is still the process that was recorded with `startTime`. */
export function sameProcess(pid: number, startTime: string | null): boolean {
  return pid > 0 && startTime !== null && procStartTime(pid) === startTime;
}

export class Store {
  constructor(readonly root: string) {}

  dir(id: string): string {
    return path.join(this.root, validateId(id));
  }

  /**
   * Where a container's tsbox-sandbox listens. Not inside the container's directory: a
   * socket path must fit in 107 bytes, and CRI's ids alone are 64.
   */
  socketPath(id: string): string {
    const dir = path.join(this.root, '.sockets');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    return path.join(dir, `${crypto.createHash('sha256').update(validateId(id)).digest('hex').slice(0, 20)}.sock`);
  }

  /** Claims the id: AlreadyExists when a container of that id is known. */
  claim(id: string): string {
    const dir = this.dir(id);
    fs.mkdirSync(this.root, { recursive: true, mode: 0o711 });
    try {
      fs.mkdirSync(dir, { mode: 0o700 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw EngineError.alreadyExists(`container ${id} already exists`);
      throw e;
    }
    return dir;
  }

  read(id: string): ContainerRecord {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.dir(id), 'meta.json'), 'utf8')) as ContainerRecord;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw EngineError.notFound(`container ${id} does not exist`);
      throw e;
    }
  }

  write(rec: ContainerRecord): void {
    const dir = this.dir(rec.id);
    const tmp = path.join(dir, `.meta.json.${process.pid}`);
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(rec, null, 2));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, path.join(dir, 'meta.json'));
  }

  /** Runs `fn` holding the container's lock. */
  async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const dir = this.dir(id);
    let fd: number;
    try {
      fd = fs.openSync(path.join(dir, 'lock'), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw EngineError.notFound(`container ${id} does not exist`);
      throw e;
    }
    try {
      await native.flockExclusive(fd);
      return await fn();
    } finally {
      fs.closeSync(fd);
    }
  }

  list(): string[] {
    try {
      return fs
        .readdirSync(this.root, { withFileTypes: true })
        .filter((d) => d.isDirectory() && fs.existsSync(path.join(this.root, d.name, 'meta.json')))
        .map((d) => d.name)
        .sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
  }

  remove(id: string): void {
    fs.rmSync(this.dir(id), { recursive: true, force: true });
  }
}
