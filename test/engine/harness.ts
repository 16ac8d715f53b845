/**
 * Engine test harness: one state root per test file, containers whose stdout/stderr go
 * to files in their bundle, and a record of everything to clean up afterwards.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine, type EngineOptions } from '../../src/sandbox/engine';
import type { Process } from '../../src/oci/spec';
import { Bundle } from './bundle';
import { cgroupExists } from '../cgroupfs';

export class Harness {
  readonly root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbox-root-'));
  readonly engine: Engine;

  constructor(opts: Omit<EngineOptions, 'root'> = {}) {
    this.engine = new Engine({ ...opts, root: this.root });
  }
  private readonly bundles: Bundle[] = [];

  track(b: Bundle): Bundle {
    this.bundles.push(b);
    return b;
  }

  /** Creates the container with stdout/stderr into files in its bundle. */
  async create(b: Bundle): Promise<number> {
    this.track(b);
    const out = fs.openSync(path.join(b.dir, 'stdout'), 'w');
    const err = fs.openSync(path.join(b.dir, 'stderr'), 'w');
    const nul = fs.openSync('/dev/null', 'r');
    try {
      return (await this.engine.create(b.id, b.dir, { stdio: [nul, out, err] })).pid;
    } finally {
      [out, err, nul].forEach((fd) => fs.closeSync(fd));
    }
  }

  output(b: Bundle): { out: string; err: string } {
    return { out: fs.readFileSync(path.join(b.dir, 'stdout'), 'utf8'), err: fs.readFileSync(path.join(b.dir, 'stderr'), 'utf8') };
  }

  /** create + start + wait + delete; what the container printed and its exit status. */
  async run(b: Bundle): Promise<{ status: number; out: string; err: string }> {
    await this.create(b);
    await this.engine.start(b.id);
    const status = await this.engine.wait(b.id);
    await this.engine.delete(b.id);
    return { status, ...this.output(b) };
  }

  /** Runs a process in a running container; returns its status and output. */
  async exec(b: Bundle, args: string[], extra: Partial<Process> = {}): Promise<{ status: number; out: string }> {
    const file = path.join(b.dir, `exec-${Date.now()}-${Math.random()}`);
    const out = fs.openSync(file, 'w');
    const nul = fs.openSync('/dev/null', 'r');
    const proc: Process = { ...b.spec.process!, args, terminal: false, ...extra };
    let started;
    try {
      started = await this.engine.exec(b.id, proc, { stdio: [nul, out, out] });
    } finally {
      fs.closeSync(out);
      fs.closeSync(nul);
    }
    try {
      const status = await this.engine.waitExec(b.id, started.execId, started.conn);
      return { status, out: fs.readFileSync(file, 'utf8') };
    } finally {
      started.conn.close();
    }
  }

  async cleanup(): Promise<void> {
    for (const id of this.engine.store.list()) await this.engine.delete(id, true).catch(() => undefined);
    for (const b of this.bundles) b.cleanup();
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/** What a failed create must not leave behind, measured before and after. */
export function footprint(root: string, id: string): { mounts: number; sandboxes: string[]; cgroup: boolean; dirExists: boolean } {
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').length;
  const sandboxes = fs
    .readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
      } catch {
        return '';
      }
    })
    .filter((c) => c.startsWith(path.resolve(__dirname, '../../build/bin/tsbox-sandbox')) && c.includes(id));
  return { mounts, sandboxes, cgroup: cgroupExists(`tsbox-test/${id}`), dirExists: fs.existsSync(path.join(root, id)) };
}
