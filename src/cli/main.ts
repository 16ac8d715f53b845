/**
 * `tsbox`: an OCI runtime command line over the sandbox engine, runc-compatible in its
 * commands and flags (create/start/state/kill/delete/list/ps/exec/run). One process per
 * command; all state is in the engine's root directory and the sandbox processes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Engine } from '../sandbox/engine';
import { EngineError } from '../sandbox/errors';
import { native } from '../native/addon';
import { features } from '../oci/features';
import { parseSignal } from '../oci/linux';
import type { Process, Spec } from '../oci/spec';
import { boolFlag, flag, FlagSpec, parseArgs, Parsed, UsageError } from './args';
import { formatTop, top, type TopRow } from './top';

const VERSION = '0.1.0';

const GLOBAL_FLAGS: FlagSpec[] = [
  { names: ['root'] },
  { names: ['log'] },
  { names: ['log-format'] },
  { names: ['debug'], bool: true },
  { names: ['systemd-cgroup'], bool: true },
  { names: ['criu'] },
  { names: ['rootless'] },
  { names: ['version', 'v'], bool: true },
  { names: ['help', 'h'], bool: true },
];

const CREATE_FLAGS: FlagSpec[] = [
  { names: ['bundle', 'b'] },
  { names: ['console-socket'] },
  { names: ['pid-file'] },
  { names: ['no-pivot'], bool: true },
  { names: ['no-new-keyring'], bool: true },
  { names: ['preserve-fds'] },
  { names: ['detach', 'd'], bool: true },
  { names: ['keep'], bool: true },
];

const EXEC_FLAGS: FlagSpec[] = [
  { names: ['process', 'p'] },
  { names: ['tty', 't'], bool: true },
  { names: ['detach', 'd'], bool: true },
  { names: ['pid-file'] },
  { names: ['console-socket'] },
  { names: ['cwd'] },
  { names: ['env', 'e'], multi: true },
  { names: ['user', 'u'] },
  { names: ['additional-gids', 'g'], multi: true },
  { names: ['no-new-privs'], bool: true },
  { names: ['cap', 'c'], multi: true },
  { names: ['preserve-fds'] },
];

const USAGE = `usage: tsbox [--root DIR] [--log FILE] [--log-format text|json] COMMAND [ARGS]

commands:
  create [--bundle DIR] [--console-socket SOCK] [--pid-file FILE] ID
  start ID
  run [--bundle DIR] [--console-socket SOCK] [--pid-file FILE] [--detach] ID
  state ID
  kill [--all] ID [SIGNAL]
  delete [--force] ID
  list [--format table|json] [--quiet]
  ps [--format table|json] ID
  pause ID
  resume ID
  update --resources FILE|- ID
  exec [--tty] [--detach] [--process FILE | [--env K=V] [--cwd DIR] [--user UID[:GID]] ID -- ARGS...]
  top [--json | --once] [--interval SECONDS]   every container under the root, all namespaces
  features
`;

class Cli {
  private logFile: string | undefined;
  private logJson = false;

  constructor(private readonly engine: Engine) {}

  setLog(file: string | undefined, format: string | undefined): void {
    this.logFile = file;
    this.logJson = format === 'json';
  }

  /** runc writes errors to its log too; containerd-style callers read them from there. */
  logError(msg: string): void {
    if (!this.logFile) return;
    const line = this.logJson
      ? JSON.stringify({ level: 'error', msg, time: new Date().toISOString() })
      : `time="${new Date().toISOString()}" level=error msg="${msg}"`;
    try {
      fs.appendFileSync(this.logFile, `${line}\n`);
    } catch {
      // logging must never hide the real error
    }
  }

  private one(p: Parsed, what = 'container id'): string {
    if (p.positional.length !== 1) throw new UsageError(`expected exactly one ${what}`);
    return p.positional[0];
  }

  /**
   * runc's console-socket contract: the pty is made inside the container and its master is
   * sent to whoever listens on SOCK. We connect and hand the connection to the container.
   */
  private consoleSocket(socketPath: string | undefined): number {
    if (!socketPath) throw new UsageError('process.terminal is set: a --console-socket is required');
    return native.unixConnect(path.resolve(socketPath));
  }

  /**
   * `callerReaps`: as runc, whose container process is left to its caller's reaper when the
   * caller goes on without it (create, run --detach) and names a --pid-file to watch.
   */
  async create(p: Parsed, callerReaps = flag(p, 'pid-file') !== undefined): Promise<number> {
    const id = this.one(p);
    const bundle = path.resolve(flag(p, 'bundle') ?? '.');
    const spec = readJson<Spec>(path.join(bundle, 'config.json'));
    const pidFile = flag(p, 'pid-file');
    const consoleFd = spec?.process?.terminal ? this.consoleSocket(flag(p, 'console-socket')) : null;
    try {
      await this.engine.create(id, bundle, {
        stdio: consoleFd !== null ? [consoleFd] : [0, 1, 2],
        pidFile: pidFile ? path.resolve(pidFile) : undefined,
        callerReaps,
      });
    } finally {
      if (consoleFd !== null) fs.closeSync(consoleFd);
    }
    return 0;
  }

  async run(p: Parsed): Promise<number> {
    await this.create(p, boolFlag(p, 'detach') && flag(p, 'pid-file') !== undefined);
    const id = this.one(p);
    try {
      await this.engine.start(id);
    } catch (e) {
      await this.engine.delete(id, true).catch(() => undefined);
      throw e;
    }
    if (boolFlag(p, 'detach')) return 0;
    const status = await this.engine.wait(id);
    if (!boolFlag(p, 'keep')) await this.engine.delete(id, true);
    return status;
  }

  async exec(p: Parsed): Promise<number> {
    const id = p.positional[0];
    if (!id) throw new UsageError('exec needs a container id');
    const rec = this.engine.store.read(id);
    const spec = readJson<Spec>(path.join(rec.bundle, 'config.json'));
    const base = spec?.process;
    let proc: Process;
    const file = flag(p, 'process');
    if (file) {
      proc =
        readJson<Process>(path.resolve(file)) ??
        (() => {
          throw new UsageError(`cannot read ${file}`);
        })();
    } else {
      const args = p.positional.slice(1);
      if (args.length === 0) throw new UsageError('exec needs a command (or --process)');
      const user = flag(p, 'user');
      const [uid, gid] = user ? user.split(':').map(Number) : [base?.user.uid ?? 0, base?.user.gid ?? 0];
      proc = {
        ...(base ?? { user: { uid: 0, gid: 0 }, cwd: '/' }),
        args,
        env: [...(base?.env ?? []), ...(p.flags.get('env') ?? [])],
        cwd: flag(p, 'cwd') ?? base?.cwd ?? '/',
        user: { uid, gid: gid ?? 0, additionalGids: (p.flags.get('additional-gids') ?? []).map(Number) },
        terminal: boolFlag(p, 'tty'),
      };
      if (boolFlag(p, 'no-new-privs')) proc.noNewPrivileges = true;
    }
    if (boolFlag(p, 'tty')) proc.terminal = true;
    const consoleFd = proc.terminal ? this.consoleSocket(flag(p, 'console-socket')) : null;
    const pidFile = flag(p, 'pid-file');
    let started;
    try {
      started = await this.engine.exec(id, proc, {
        stdio: consoleFd !== null ? [consoleFd] : [0, 1, 2],
        pidFile: pidFile ? path.resolve(pidFile) : undefined,
        callerReaps: boolFlag(p, 'detach') && pidFile !== undefined,
      });
    } finally {
      if (consoleFd !== null) fs.closeSync(consoleFd);
    }
    if (boolFlag(p, 'detach')) {
      started.conn.close();
      return 0;
    }
    try {
      return await this.engine.waitExec(id, started.execId, started.conn);
    } finally {
      started.conn.close();
    }
  }

  /** One table (or JSON) for scripts; refreshed like top(1) when stdout is a terminal. */
  async top(p: Parsed): Promise<number> {
    if (p.positional.length) throw new UsageError('top takes no container id: it shows every container under --root');
    const root = this.engine.store.root;
    if (boolFlag(p, 'json')) {
      process.stdout.write(`${JSON.stringify(await top(root), null, 2)}\n`);
      return 0;
    }
    if (boolFlag(p, 'once') || !process.stdout.isTTY) {
      process.stdout.write(formatTop(await top(root)));
      return 0;
    }
    const interval = Number(flag(p, 'interval') ?? 2);
    if (!(interval > 0)) throw new UsageError(`--interval ${flag(p, 'interval')}: not a positive number of seconds`);
    let previous: { rows: TopRow[]; at: number } | undefined;
    for (;;) {
      const at = Date.now();
      const rows = await top(root, undefined, at);
      const head = `tsbox top - ${new Date(at).toISOString()} - ${root} - ${rows.length} containers, ${rows.filter((r) => r.status === 'running').length} running\n\n`;
      process.stdout.write(`\x1b[H\x1b[2J${head}${formatTop(rows, previous && { rows: previous.rows, elapsed: (at - previous.at) / 1000 })}`);
      previous = { rows, at };
      await new Promise((r) => setTimeout(r, interval * 1000));
    }
  }

  async dispatch(cmd: string, argv: string[]): Promise<number> {
    switch (cmd) {
      case 'create':
        return this.create(parseArgs(argv, CREATE_FLAGS, false));
      case 'run':
        return this.run(parseArgs(argv, CREATE_FLAGS, false));
      case 'start':
        await this.engine.start(this.one(parseArgs(argv, [], false)));
        return 0;
      case 'state': {
        const st = await this.engine.ociState(this.one(parseArgs(argv, [], false)));
        process.stdout.write(`${JSON.stringify(st, null, 2)}\n`);
        return 0;
      }
      case 'kill': {
        const p = parseArgs(argv, [{ names: ['all', 'a'], bool: true }], false);
        const [id, sig = 'TERM'] = p.positional;
        if (!id || p.positional.length > 2) throw new UsageError('usage: tsbox kill [--all] ID [SIGNAL]');
        const signal = parseSignal(sig);
        if (signal === undefined) throw new UsageError(`unknown signal "${sig}"`);
        try {
          await this.engine.kill(id, signal, boolFlag(p, 'all'));
        } catch (e) {
          // runc's words: runc-compatible callers (containerd's runc-v2 shim) recognise an
          // already stopped container by "container not running" and answer NotFound.
          if (e instanceof EngineError && e.detail.status === 'stopped') throw new Error(`cannot kill container ${id}: container not running`, { cause: e });
          throw e;
        }
        return 0;
      }
      case 'delete': {
        const p = parseArgs(argv, [{ names: ['force', 'f'], bool: true }], false);
        const id = this.one(p);
        try {
          await this.engine.delete(id, boolFlag(p, 'force'));
        } catch (e) {
          // runc: deleting a container that does not exist with --force is not an error
          if (!(boolFlag(p, 'force') && e instanceof EngineError && e.kind === 'NotFound')) throw e;
        }
        return 0;
      }
      case 'list':
      case 'ls': {
        const p = parseArgs(argv, [{ names: ['format', 'f'] }, { names: ['quiet', 'q'], bool: true }], false);
        const all = await this.engine.list();
        if (boolFlag(p, 'quiet')) {
          for (const r of all) process.stdout.write(`${r.id}\n`);
        } else if (flag(p, 'format') === 'json') {
          const out = all.map((r) => ({
            ociVersion: r.ociVersion,
            id: r.id,
            pid: r.status === 'stopped' ? 0 : r.pid,
            status: r.status,
            bundle: r.bundle,
            rootfs: path.join(r.bundle, 'rootfs'),
            created: r.createdAt,
            owner: r.owner === '0' ? 'root' : r.owner,
          }));
          process.stdout.write(`${JSON.stringify(out)}\n`);
        } else {
          const rows = [
            ['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER'],
            ...all.map((r) => [r.id, String(r.status === 'stopped' ? 0 : r.pid), r.status, r.bundle, r.createdAt, r.owner === '0' ? 'root' : r.owner]),
          ];
          const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
          for (const row of rows)
            process.stdout.write(
              `${row
                .map((cell, c) => cell.padEnd(widths[c]))
                .join('   ')
                .trimEnd()}\n`,
            );
        }
        return 0;
      }
      case 'ps': {
        const p = parseArgs(argv, [{ names: ['format', 'f'] }], false);
        const pids = await this.engine.ps(this.one(p));
        if (flag(p, 'format') === 'json') process.stdout.write(`${JSON.stringify(pids)}\n`);
        else process.stdout.write(`PID\n${pids.map((x) => `${x}\n`).join('')}`);
        return 0;
      }
      case 'exec':
        return this.exec(parseArgs(argv, EXEC_FLAGS, true));
      case 'pause':
        await this.engine.pause(this.one(parseArgs(argv, [], false)));
        return 0;
      case 'resume':
        await this.engine.resume(this.one(parseArgs(argv, [], false)));
        return 0;
      case 'update': {
        // runc's form: the new linux.resources as JSON, from a file or stdin ("-").
        const p = parseArgs(argv, [{ names: ['resources', 'r'] }], false);
        const id = this.one(p);
        const from = flag(p, 'resources');
        if (!from) throw new UsageError('update needs --resources FILE (or - for stdin)');
        let resources: unknown;
        try {
          // fd 0 itself: /dev/stdin cannot be opened when stdin is a socket (Node's pipes are).
          resources = JSON.parse(fs.readFileSync(from === '-' ? 0 : path.resolve(from), 'utf8'));
        } catch (e) {
          throw new UsageError(`--resources ${from}: ${(e as Error).message}`);
        }
        if (typeof resources !== 'object' || resources === null || Array.isArray(resources)) throw new UsageError(`--resources ${from}: not a JSON object`);
        await this.engine.update(id, resources);
        return 0;
      }
      case 'top':
        return this.top(parseArgs(argv, [{ names: ['json'], bool: true }, { names: ['once'], bool: true }, { names: ['interval', 'n'] }], false));
      case 'features':
        parseArgs(argv, [], false);
        process.stdout.write(`${JSON.stringify(features(VERSION), null, 2)}\n`);
        return 0;
      default:
        throw new UsageError(`unknown command "${cmd}"`);
    }
  }
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    // Absent or half-written: callers treat it as not there.
    return null;
  }
}

export async function main(argv: string[]): Promise<number> {
  let cli: Cli | null = null;
  try {
    const global = parseArgs(argv, GLOBAL_FLAGS, true);
    if (boolFlag(global, 'version')) {
      process.stdout.write(`tsbox version ${VERSION}\nsandbox ${native.version()}\nspec: 1.0.2\n`);
      return 0;
    }
    const [cmd, ...rest] = global.positional;
    if (!cmd || boolFlag(global, 'help')) {
      process.stdout.write(USAGE);
      return cmd ? 0 : 2;
    }
    cli = new Cli(new Engine({ root: flag(global, 'root') ?? '/run/tsbox' }));
    cli.setLog(flag(global, 'log'), flag(global, 'log-format'));
    return await cli.dispatch(cmd, rest);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    cli?.logError(msg);
    process.stderr.write(`tsbox: ${msg}\n`);
    if (e instanceof UsageError) process.stderr.write(USAGE);
    return e instanceof UsageError ? 2 : 1;
  }
}
