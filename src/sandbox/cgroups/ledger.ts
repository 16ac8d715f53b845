/**
 * Parent cgroups tsbox created (`/default` for `/default/c1`) are shared by later
 * containers; a ledger under the state root remembers them, so the last container to
 * leave removes them whoever created them, and pre-existing parents are never touched.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native } from '../../native/addon';
import { EngineError } from '../errors';
import type { CgroupRecord } from './layout';

export class ParentLedger {
  /** `file`: the ledger, one directory per line, under the engine's state root. */
  constructor(readonly file: string) {}

  /** Notes the parents `rec`'s create made (its own directories are its record's). */
  record(rec: CgroupRecord): void {
    const leaves = new Set(rec.dirs.map((d) => d.dir));
    const parents = rec.created.filter((d) => !leaves.has(d));
    if (parents.length === 0) return;
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o711 });
      fs.appendFileSync(this.file, parents.map((d) => `${d}\n`).join(''));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new EngineError('Internal', `record the cgroup parents in ${this.file}: ${code}`, { step: `write ${this.file}`, errno: code });
    }
  }

  /** After `rec`'s own directories are gone: removes the recorded parents above it that nothing uses any more (the native CLI's delete does the same). */
  release(rec: CgroupRecord): void {
    native.releaseCgroupParents(
      this.file,
      rec.dirs.map((d) => d.dir),
    );
  }
}
