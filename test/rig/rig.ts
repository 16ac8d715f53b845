/**
 * The test rig as tests see it: the private containerd started by global setup (through
 * scripts/containerd, the same script `make demo` uses) and small helpers around `ctr`.
 */
import { execFile, execFileSync, spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';

export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');
export const CONTAINERD_SCRIPT = path.join(PROJECT_ROOT, 'scripts', 'containerd');

export interface Rig {
  dir: string;
  address: string;
  ttrpcAddress: string;
}

/** The rig of this jest run; global setup exports its directory to every worker. */
export function rig(): Rig {
  const dir = process.env.TSBOX_RIG_DIR;
  if (!dir) throw new Error('TSBOX_RIG_DIR is not set: run e2e tests through jest (global setup starts containerd)');
  return { dir, address: path.join(dir, 'containerd.sock'), ttrpcAddress: path.join(dir, 'containerd.sock.ttrpc') };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `ctr --address <rig> ARGS…` to completion; never throws on a non-zero exit. */
export function ctr(args: string[], opts: { namespace?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  const { address } = rig();
  const full = ['--address', address, '--namespace', opts.namespace ?? 'default', ...args];
  return new Promise((resolve) => {
    execFile('ctr', full, { timeout: opts.timeoutMs ?? 30000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr: withoutCgroupV1Warning(stderr) });
    });
  });
}

/** ctr 2.x warns on every command that cgroup v1 (this host's) is deprecated. */
function withoutCgroupV1Warning(stderr: string): string {
  return stderr
    .split('\n')
    .filter((l) => !/level=warning msg="DEPRECATION: The support for cgroup v1 is deprecated/.test(l))
    .join('\n');
}

/** Starts a long-running `ctr …` (events, a detached reader) and hands back the child. */
export function ctrSpawn(args: string[], namespace = 'default'): ChildProcess {
  const { address } = rig();
  return spawn('ctr', ['--address', address, '--namespace', namespace, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** A container id no other test (or earlier run) uses. */
export function uniqueId(prefix: string): string {
  return `${prefix}-${crypto.randomBytes(4).toString('hex')}`;
}

/** Resolves with the first stdout line matching `pattern`, or rejects after `timeoutMs`. */
export function waitForLine(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; got:\n${buffered}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      const line = buffered.split('\n').find((l) => pattern.test(l));
      if (line !== undefined) {
        cleanup();
        resolve(line);
      }
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
    };
    child.stdout?.on('data', onData);
  });
}

/**
 * The /tasks/ topics `ctr events` printed for one run, in order, up to its /tasks/delete.
 * `ctr events` is not subscribed the instant it starts (docs/architecture.md), so the run is
 * repeated under a fresh id until a subscriber saw it.
 */
export async function taskTopicsOfRun(prefix: string, run: (id: string) => Promise<unknown>, attempts = 20): Promise<string[]> {
  const events = ctrSpawn(['events']);
  try {
    for (let attempt = 0; attempt < attempts; attempt++) {
      const id = uniqueId(prefix);
      const lines: string[] = [];
      const collect = (c: Buffer) =>
        lines.push(
          ...c
            .toString()
            .split('\n')
            .filter((l) => l.includes(id) && l.includes('/tasks/')),
        );
      events.stdout?.on('data', collect);
      await run(id);
      await waitForLine(events, new RegExp(`/tasks/delete.*${id}`), 3000).catch(() => undefined);
      events.stdout?.off('data', collect);
      if (lines.length > 0) return lines.map((l) => /\/tasks\/[a-z-]+/.exec(l)?.[0] ?? '');
    }
    throw new Error('ctr events never showed a whole run');
  } finally {
    events.kill();
  }
}

/**
 * Resolves once `cond` holds, checking again on every turn of the event loop (these are
 * states of other processes: there is no event to await); rejects after `ms`.
 */
export async function waitUntil(cond: () => boolean | Promise<boolean>, what: string, ms = 20000): Promise<void> {
  for (const deadline = Date.now() + ms; Date.now() < deadline;) {
    if (await cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`waited ${ms} ms in vain for: ${what}`);
}

/** The task's status as `ctr task ls` shows it, or undefined when containerd has none. */
export async function taskStatus(id: string, namespace = 'default'): Promise<string | undefined> {
  const ls = await ctr(['task', 'ls'], { namespace });
  return new RegExp(`^${id}\\s+\\d+\\s+(\\w+)`, 'm').exec(ls.stdout)?.[1];
}

/** The task's host pid as `ctr task ls` shows it. */
export async function taskPid(id: string, namespace = 'default'): Promise<number> {
  const ls = await ctr(['task', 'ls'], { namespace });
  return Number(new RegExp(`^${id}\\s+(\\d+)`, 'm').exec(ls.stdout)?.[1]);
}

/** SIGKILLs a task, waits until it is stopped, removes task and container. */
export async function removeTask(id: string, namespace = 'default'): Promise<void> {
  await ctr(['task', 'kill', '-s', 'KILL', id], { namespace });
  await waitUntil(async () => (await taskStatus(id, namespace)) !== 'RUNNING', `${id} stopped`).catch(() => undefined);
  await ctr(['task', 'rm', '-f', id], { namespace });
  await ctr(['container', 'rm', id], { namespace });
}

/** A process that exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** Pids of tsbox shim daemons whose command line continues with `args`. */
export function shimDaemons(args: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', `bundle/shim.js ${args}`], { encoding: 'utf8' })
      .trim()
      .split('\n');
  } catch {
    return [];
  }
}
