/**
 * Where cgroups live: the host's cgroup mounts, the path a spec asks for, and the
 * filesystem steps both drivers take (mkdir, write, rmdir) with errors that name them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError } from '../errors';

export interface Hierarchy {
  version: 1 | 2;
  mountpoint: string;
  /** v1 controllers of this hierarchy ("name=systemd" for named ones); v2: "" */
  controllers: string[];
}

/** cgroup mounts from /proc/self/mountinfo text. */
export function parseMountinfo(text: string): Hierarchy[] {
  const out: Hierarchy[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const [fstype, , superOpts = ''] = line.slice(sep + 3).split(' ');
    const mountpoint = left[4];
    if (fstype === 'cgroup2') out.push({ version: 2, mountpoint, controllers: [] });
    else if (fstype === 'cgroup') {
      const controllers = superOpts
        .split(',')
        .filter((o) => o !== 'rw' && o !== 'ro' && !o.startsWith('release_agent') && o !== 'clone_children' && o !== 'noprefix' && o !== 'xattr');
      out.push({ version: 1, mountpoint, controllers });
    }
  }
  return out;
}

/**
 * The cgroupfs path for a spec's cgroupsPath. The systemd form "slice:prefix:name" is
 * translated the way runc's systemd driver names things ("a-b.slice" nests under
 * "a.slice"); tsbox writes cgroupfs itself and never talks to systemd.
 */
export function resolveCgroupsPath(cgroupsPath: string | undefined, id: string, ownCgroup = '/'): string {
  if (!cgroupsPath) return `/tsbox/${id}`;
  const parts = cgroupsPath.split(':');
  if (parts.length === 3 && !cgroupsPath.startsWith('/')) {
    const [slice, prefix, name] = parts;
    const unit = name.endsWith('.slice') ? name : `${prefix ? `${prefix}-` : ''}${name}.scope`;
    return path.posix.join(expandSlice(slice || 'system.slice'), unit);
  }
  if (cgroupsPath.split('/').includes('..')) {
    throw EngineError.invalidArgument(`linux.cgroupsPath: ".." is not allowed in "${cgroupsPath}"`, 'linux.cgroupsPath');
  }
  return cgroupsPath.startsWith('/') ? path.posix.normalize(cgroupsPath) : path.posix.join(ownCgroup, cgroupsPath);
}

/** "a-b-c.slice" → "/a.slice/a-b.slice/a-b-c.slice"; "-.slice" is the root. */
export function expandSlice(slice: string): string {
  if (!slice.endsWith('.slice')) throw EngineError.invalidArgument(`linux.cgroupsPath: "${slice}" is not a systemd slice`, 'linux.cgroupsPath');
  const base = slice.slice(0, -'.slice'.length);
  if (base === '-' || base === '') return '/';
  const words = base.split('-');
  if (words.some((w) => w === '')) throw EngineError.invalidArgument(`linux.cgroupsPath: invalid slice "${slice}"`, 'linux.cgroupsPath');
  let acc = '';
  let out = '';
  for (const w of words) {
    acc = acc ? `${acc}-${w}` : w;
    out += `/${acc}.slice`;
  }
  return out;
}

/** A container's cgroup directories, one per hierarchy it is in (kept in meta.json). */
export interface CgroupRecord {
  path: string;
  version: 1 | 2;
  /** Every directory of this cgroup (one per hierarchy). */
  dirs: { hierarchy: string; name: string; dir: string }[];
  /** Directories tsbox created (parents included), deepest last. */
  created: string[];
}

/** One file write a spec's resources turn into. */
export interface CgroupWrite {
  /** v1 controller the file belongs to; "" on v2. */
  controller: string;
  file: string;
  value: string;
  field: string;
}

export function num(v: number): string {
  return String(Math.trunc(v));
}

export function writeFile(file: string, value: string, field: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new EngineError(err.code === 'ENOENT' ? 'InvalidArgument' : 'Internal', `${field}: write ${value} to ${file}: ${err.code}`, {
      step: `write ${file}`,
      errno: err.code,
      field,
    });
  }
}

/**
 * Creates `dir` and the missing directories above it under `mountpoint`, recording each
 * one created; `prepare(parent, child)` runs on every level (a driver's per-level setup).
 */
export function mkdirs(mountpoint: string, dir: string, created: string[], prepare: (parent: string, child: string) => void): void {
  const rel = path.relative(mountpoint, dir).split('/').filter(Boolean);
  let cur = mountpoint;
  for (const part of rel) {
    const parent = cur;
    cur = path.join(cur, part);
    try {
      fs.mkdirSync(cur);
      created.push(cur);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') {
        throw new EngineError('Internal', `linux.cgroupsPath: mkdir ${cur}: ${code}`, { step: `mkdir ${cur}`, errno: code, field: 'linux.cgroupsPath' });
      }
    }
    prepare(parent, cur);
  }
}

/** Writes `value` until `done()` says the kernel got there (freezing takes a while). */
export async function writeUntil(file: string, value: string, done: () => boolean, what: string): Promise<void> {
  for (let attempt = 0; attempt < 1000; attempt++) {
    writeFile(file, value, 'linux.cgroupsPath');
    if (done()) return;
    await new Promise((r) => setTimeout(r, 1));
  }
  throw new EngineError('Internal', `cgroup ${path.dirname(file)} did not become ${what}`, { step: `write ${file}` });
}
