/**
 * The sandbox engine: OCI bundles in, Linux containers out. It owns the metadata store,
 * cgroups and the runtime-namespace hooks, and drives one tsbox-sandbox process per
 * container through its control socket. Every public method is safe to call from a fresh
 * process (the `tsbox` CLI is one process per command): state lives on disk and in the
 * sandbox process, never only in memory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as crypto from 'node:crypto';
import type { Process, Resources, Spec, State } from '../oci/spec';
import { planContainer, planProcess, PlanError } from '../oci/plan';
import { type CgroupDriver, type CgroupRecord, cgroupDriver, ParentLedger, resolveCgroupsPath, type Stats } from './cgroups';
import { EngineError } from './errors';
import { runHooks } from './hooks';
import { validateId } from './ids';
import { SandboxConnection, SandboxState, ExitEvent } from './sandbox-process';
import { ContainerRecord, procStartTime, sameProcess, Store } from './store';
import { expectStatus, transition } from './status';

export interface Logger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

const SILENT: Logger = { warn: () => undefined, info: () => undefined };

export interface EngineOptions {
  /** State root; one directory per container below it. */
  root: string;
  logger?: Logger;
  sandboxBinary?: string;
  cgroups?: CgroupDriver;
  /** Seconds tsbox-sandbox waits for any one step of a container's setup (plus its
   * hooks' timeouts) before it gives up on the container; tsbox-sandbox's default if unset. */
  setupDeadline?: number;
}

export interface CreateOptions {
  /**
   * stdin, stdout, stderr for the init. When the spec asks for a terminal: one unix socket
   * (a console socket) over which the container sends its pty master.
   */
  stdio?: number[];
  /** Written last, when the container is created (containerd reads it as "create done"). */
  pidFile?: string;
  /**
   * The caller reaps the init itself, as a runc-compatible caller does with the pid in
   * its --pid-file (the runc-v2 shim waits for it as a child of its own, a subreaper):
   * the init is left to the caller's reaper, and its exit status is the caller's to know.
   */
  callerReaps?: boolean;
  /** A pod sandbox: the init holds its namespaces and runs nothing (src/shim/sandbox-service.ts). */
  pause?: boolean;
}

export interface ExecOptions {
  /** The caller's name for the process (containerd's exec id); one is made up otherwise. */
  execId?: string;
  stdio?: number[];
  pidFile?: string;
  /** As CreateOptions.callerReaps, for the exec'd process. */
  callerReaps?: boolean;
}

/** Undo steps of a half-done create, run in reverse unless the create succeeds. */
class Rollback {
  private steps: (() => Promise<void> | void)[] = [];
  add(step: () => Promise<void> | void): void {
    this.steps.push(step);
  }
  release(): void {
    this.steps = [];
  }
  async run(): Promise<void> {
    for (const step of this.steps.reverse()) {
      try {
        await step();
      } catch {
        // Best effort: keep undoing the rest.
      }
    }
    this.steps = [];
  }
}

function planFailure(e: unknown): unknown {
  if (e instanceof PlanError) return new EngineError('InvalidArgument', e.message, { field: e.field });
  return e;
}

export class Engine {
  readonly store: Store;
  private readonly log: Logger;
  private readonly cgroups: CgroupDriver;
  private readonly ledger: ParentLedger;

  constructor(private readonly opts: EngineOptions) {
    this.store = new Store(opts.root);
    this.log = opts.logger ?? SILENT;
    this.cgroups = opts.cgroups ?? cgroupDriver();
    this.ledger = new ParentLedger(path.join(this.store.root, '.cgroup-parents'));
  }

  private async removeCgroup(cgroup: CgroupRecord): Promise<string[]> {
    const left = await this.cgroups.remove(cgroup);
    this.ledger.release(cgroup);
    return left;
  }

  private readSpec(bundle: string): Spec {
    const file = path.join(bundle, 'config.json');
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new EngineError('InvalidArgument', `read ${file}: ${(e as NodeJS.ErrnoException).code}`, { field: 'config.json' });
    }
    try {
      return JSON.parse(text) as Spec;
    } catch (e) {
      throw new EngineError('InvalidArgument', `${file} is not valid JSON: ${(e as Error).message}`, { field: 'config.json' });
    }
  }

  private state(rec: ContainerRecord): State {
    return { ociVersion: rec.ociVersion, id: rec.id, status: rec.status, pid: rec.pid || undefined, bundle: rec.bundle, annotations: rec.annotations };
  }

  async create(id: string, bundleIn: string, opts: CreateOptions = {}): Promise<ContainerRecord> {
    validateId(id);
    const bundle = path.resolve(bundleIn);
    const spec = this.readSpec(bundle);
    const rootfs = spec.root?.path ? path.resolve(bundle, spec.root.path) : '';
    if (!rootfs || !fs.existsSync(rootfs)) {
      throw new EngineError('InvalidArgument', `root.path: rootfs ${rootfs || '(none)'} does not exist`, { field: 'root.path', errno: 'ENOENT' });
    }
    const dir = this.store.claim(id);
    const undo = new Rollback();
    const afterRollback: { poststop?: () => Promise<void> } = {};
    undo.add(() => this.store.remove(id));
    try {
      return await this.store.locked(id, async () => {
        const cgroupPath = resolveCgroupsPath(spec.linux?.cgroupsPath, id);
        const cgroup = this.cgroups.create(cgroupPath, spec.linux?.resources);
        undo.add(async () => {
          for (const pid of this.cgroups.pids(cgroup)) killQuietly(pid);
          await this.removeCgroup(cgroup);
        });
        this.ledger.record(cgroup);
        const plan = (() => {
          try {
            return planContainer(spec, {
              id,
              bundle,
              cgroupProcs: this.cgroups.procsFiles(cgroup),
              cgroupViews: this.cgroups.views(cgroup),
              cgroupVersion: cgroup.version,
              memoryCgroup: this.cgroups.dirFor(cgroup, 'memory'),
              setupDeadline: this.opts.setupDeadline,
              hostHasKcore: fs.existsSync('/proc/kcore'),
              pause: opts.pause,
            });
          } catch (e) {
            throw planFailure(e);
          }
        })();

        const socket = this.store.socketPath(id);
        const { pid: sandboxPid, exited } = await SandboxConnection.spawn(socket, path.join(dir, 'sandbox.log'), this.opts.sandboxBinary);
        const conn = SandboxConnection.connect(socket);
        undo.add(async () => {
          await conn.shutdown().catch(() => killQuietly(sandboxPid));
          conn.close();
          await exited();
        });
        const rec: ContainerRecord = {
          id,
          bundle,
          status: 'creating',
          pid: 0,
          pidStartTime: null,
          sandboxPid,
          sandboxStartTime: procStartTime(sandboxPid),
          socket,
          createdAt: new Date().toISOString(),
          owner: String(process.getuid?.() ?? 0),
          ociVersion: spec.ociVersion,
          annotations: spec.annotations ?? {},
          cgroup,
          exitStatus: null,
          exitedAt: null,
        };
        const res = await conn.request<{ pid: number; stage: 'hooks' | 'created' }>(
          { op: 'create', container: id, plan, callerReaps: opts.callerReaps === true },
          opts.stdio ?? [],
        );
        rec.pid = res.pid;
        rec.pidStartTime = procStartTime(res.pid);
        if (res.stage === 'hooks') {
          const state = this.state(rec);
          try {
            await runHooks('prestart', spec.hooks?.prestart, state);
            await runHooks('createRuntime', spec.hooks?.createRuntime, state);
          } catch (e) {
            // The runtime spec continues the lifecycle at delete: poststop hooks run once
            // the container is gone.
            afterRollback.poststop = () => this.runPoststop(rec, spec);
            throw e;
          }
          // A container joining a pid namespace gets its init only now (hooks saw the
          // process that set it up): record the init.
          const resumed = await conn.request<{ pid: number }>({ op: 'resume', container: id });
          rec.pid = resumed.pid;
          rec.pidStartTime = procStartTime(resumed.pid);
        }
        rec.status = transition(id, rec.status, 'created', 'create');
        this.store.write(rec);
        if (opts.pidFile) writePidFile(opts.pidFile, rec.pid);
        undo.release();
        conn.close();
        return rec;
      });
    } catch (e) {
      await undo.run();
      await afterRollback.poststop?.();
      throw e;
    }
  }

  /** poststop hooks, given the state of a stopped container (which has no pid). */
  private async runPoststop(rec: ContainerRecord, spec: Spec | null): Promise<void> {
    const state: State = { ...this.state(rec), status: 'stopped', pid: undefined };
    await runHooks('poststop', spec?.hooks?.poststop, state).catch((e: Error) => this.log.warn({ id: rec.id, err: e.message }, 'poststop hook failed'));
  }

  /** Reads a container's record and brings its status up to date with reality. */
  async load(id: string): Promise<ContainerRecord> {
    const rec = this.store.read(id);
    if (rec.status === 'stopped') return rec;
    const fresh = await this.querySandbox(rec);
    if (fresh) return fresh;
    return rec;
  }

  /**
   * Asks the sandbox for the init's status. A sandbox that is gone (not the same process
   * any more) means the container is stopped: nobody can be running it.
   */
  private async querySandbox(rec: ContainerRecord): Promise<ContainerRecord | null> {
    if (!sameProcess(rec.sandboxPid, rec.sandboxStartTime)) {
      return this.markStopped(rec, null);
    }
    let conn: SandboxConnection;
    try {
      conn = SandboxConnection.connect(rec.socket);
    } catch {
      // Its sandbox no longer listens (it is exiting): the container has stopped.
      return this.markStopped(rec, null);
    }
    try {
      const st = await conn.request<SandboxState>({ op: 'state' });
      const c = st.containers[rec.id];
      if (!c) return this.markStopped(rec, null);
      if (c.status === 'stopped') return this.markStopped(rec, c.exitStatus);
      return rec;
    } finally {
      conn.close();
    }
  }

  private markStopped(rec: ContainerRecord, exitStatus: number | null): ContainerRecord {
    if (rec.status === 'stopped') return rec;
    rec.status = 'stopped';
    rec.exitStatus = exitStatus ?? 255;
    rec.exitedAt = new Date().toISOString();
    try {
      this.store.write(rec);
    } catch {
      // Reading state must not fail because the directory is read-only or going away.
    }
    return rec;
  }

  async start(id: string): Promise<ContainerRecord> {
    return this.store.locked(id, async () => {
      const rec = await this.load(id);
      expectStatus(id, rec.status, ['created'], 'start');
      const spec = this.readSpec(rec.bundle);
      const conn = SandboxConnection.connect(rec.socket);
      try {
        await conn.request({ op: 'start', container: id });
      } finally {
        conn.close();
      }
      rec.status = transition(id, rec.status, 'running', 'start');
      this.store.write(rec);
      await runHooks('poststart', spec.hooks?.poststart, this.state(rec)).catch((e: Error) => this.log.warn({ id, err: e.message }, 'poststart hook failed'));
      return rec;
    });
  }

  async ociState(id: string): Promise<State & { rootfs?: string; created: string; owner: string }> {
    const rec = await this.load(id);
    return { ...this.state(rec), created: rec.createdAt, owner: rec.owner };
  }

  async list(): Promise<ContainerRecord[]> {
    const out: ContainerRecord[] = [];
    for (const id of this.store.list()) {
      try {
        out.push(await this.load(id));
      } catch {
        // A container being deleted right now is simply not listed.
      }
    }
    return out;
  }

  async kill(id: string, signal: number, all = false): Promise<void> {
    const rec = await this.load(id);
    expectStatus(id, rec.status, ['created', 'running', 'paused'], 'kill');
    if (all) this.killCgroup(id, signal);
    const conn = SandboxConnection.connect(rec.socket);
    try {
      await conn.request({ op: 'signal', container: id, signal });
    } catch (e) {
      if (!all) throw e;
    } finally {
      conn.close();
    }
    // A frozen process only dies once thawed (runc thaws after SIGKILL too).
    if (rec.status === 'paused' && signal === 9 && rec.cgroup) await this.cgroups.freeze(rec.cgroup, false).catch(() => undefined);
  }

  /** Drops an exited exec from the sandbox's books (its pidfd and status). */
  async forgetExec(id: string, execId: string): Promise<void> {
    const conn = SandboxConnection.connect(this.store.read(id).socket);
    try {
      await conn.request({ op: 'forgetExec', container: id, exec: execId });
    } finally {
      conn.close();
    }
  }

  /** Signals every process in the container's cgroup, whatever the sandbox's state. */
  killCgroup(id: string, signal: number): void {
    const rec = this.store.read(id);
    if (rec.cgroup) for (const pid of this.cgroups.pids(rec.cgroup)) killQuietly(pid, signal);
  }

  /** Resolves with the init's exit status once it has exited. */
  async wait(id: string): Promise<number> {
    const rec = this.store.read(id);
    if (rec.status === 'stopped') return rec.exitStatus ?? 255;
    if (!sameProcess(rec.sandboxPid, rec.sandboxStartTime)) return (await this.load(id)).exitStatus ?? 255;
    const conn = SandboxConnection.connect(rec.socket);
    try {
      const exited = new Promise<number>((resolve) => {
        conn.on('exit', (ev: ExitEvent) => {
          if (ev.container === id && ev.exec === null) resolve(ev.status);
        });
        conn.on('close', () => resolve(255));
      });
      // Subscribed first, then asked: an exit between the two is not lost.
      const st = await conn.request<SandboxState>({ op: 'state' });
      const c = st.containers[id];
      if (!c) return 255;
      if (c.status === 'stopped') return c.exitStatus ?? 255;
      return await exited;
    } finally {
      conn.close();
    }
  }

  async ps(id: string): Promise<number[]> {
    const rec = await this.load(id);
    return rec.cgroup ? this.cgroups.pids(rec.cgroup) : [];
  }

  private cgroupOf(rec: ContainerRecord) {
    if (!rec.cgroup) throw EngineError.notFound(`container ${rec.id} has no cgroup`);
    return rec.cgroup;
  }

  async stats(id: string): Promise<Stats> {
    const rec = await this.load(id);
    return this.cgroups.stats(this.cgroupOf(rec));
  }

  /** New limits on a live container (CRI's UpdateContainerResources). */
  async update(id: string, resources: Resources): Promise<void> {
    await this.store.locked(id, async () => {
      const rec = await this.load(id);
      expectStatus(id, rec.status, ['created', 'running', 'paused'], 'update');
      this.cgroups.apply(this.cgroupOf(rec), resources);
    });
  }

  pause(id: string): Promise<void> {
    return this.setFrozen(id, true);
  }

  resume(id: string): Promise<void> {
    return this.setFrozen(id, false);
  }

  private async setFrozen(id: string, frozen: boolean): Promise<void> {
    const [operation, from, to] = frozen ? (['pause', 'running', 'paused'] as const) : (['resume', 'paused', 'running'] as const);
    await this.store.locked(id, async () => {
      const rec = await this.load(id);
      expectStatus(id, rec.status, [from], operation);
      await this.cgroups.freeze(this.cgroupOf(rec), frozen);
      rec.status = transition(id, rec.status, to, operation);
      this.store.write(rec);
    });
  }

  /** A lasting connection to the container's sandbox: its 'exit' events are every exit. */
  watch(id: string): SandboxConnection {
    const conn = SandboxConnection.connect(this.store.read(id).socket);
    // Subscribed first, then asked: the sandbox tells only the clients connected when a
    // process exits, and the init can die before anyone watches (killed while created).
    // Such an exit is emitted like the event it would have been; a repeat is harmless.
    conn.request<SandboxState>({ op: 'state' }).then(
      (st) => {
        const c = st.containers[id];
        if (c?.status === 'stopped') conn.emit('exit', { container: id, exec: null, pid: c.pid, status: c.exitStatus ?? 255 } satisfies ExitEvent);
      },
      () => undefined, // the connection is gone: its 'close' says so
    );
    return conn;
  }

  /** Signals one exec'd process; NotFound once it has exited. */
  async signalExec(id: string, execId: string, signal: number): Promise<void> {
    const conn = SandboxConnection.connect(this.store.read(id).socket);
    try {
      await conn.request({ op: 'signal', container: id, exec: execId, signal });
    } finally {
      conn.close();
    }
  }

  async exec(id: string, process: Process, opts: ExecOptions = {}): Promise<{ execId: string; pid: number; conn: SandboxConnection }> {
    const rec = await this.load(id);
    expectStatus(id, rec.status, ['running'], 'exec in');
    const spec = this.readSpec(rec.bundle);
    let processPlan;
    try {
      processPlan = planProcess(process, spec.linux?.seccomp);
    } catch (e) {
      throw planFailure(e);
    }
    const execId = opts.execId ? validateId(opts.execId, 'exec id') : `exec-${crypto.randomBytes(6).toString('hex')}`;
    const conn = SandboxConnection.connect(rec.socket);
    try {
      const res = await conn.request<{ pid: number }>(
        {
          op: 'exec',
          container: id,
          exec: execId,
          plan: { cgroupProcs: rec.cgroup ? this.cgroups.procsFiles(rec.cgroup) : [], process: processPlan },
          callerReaps: opts.callerReaps === true,
        },
        opts.stdio ?? [],
      );
      if (opts.pidFile) writePidFile(opts.pidFile, res.pid);
      return { execId, pid: res.pid, conn };
    } catch (e) {
      conn.close();
      throw e;
    }
  }

  /** Waits for an exec's exit on the connection `exec` returned. */
  waitExec(id: string, execId: string, conn: SandboxConnection): Promise<number> {
    return new Promise<number>((resolve) => {
      conn.on('exit', (ev: ExitEvent) => {
        if (ev.container === id && ev.exec === execId) resolve(ev.status);
      });
      conn.on('close', () => resolve(255));
      void conn.request<SandboxState>({ op: 'state' }).then(
        (st) => {
          const e = st.containers[id]?.execs[execId];
          if (e?.status === 'stopped') resolve(e.exitStatus ?? 255);
        },
        () => resolve(255),
      );
    });
  }

  async delete(id: string, force = false): Promise<void> {
    validateId(id);
    await this.store.locked(id, async () => {
      let rec: ContainerRecord;
      try {
        rec = await this.load(id);
      } catch (e) {
        if (e instanceof EngineError && e.kind === 'NotFound') throw e;
        // Unreadable metadata: nothing more we can do than remove it.
        this.store.remove(id);
        return;
      }
      if (rec.status === 'running' || rec.status === 'paused') {
        if (!force) throw EngineError.failedPrecondition(`cannot delete container ${id}: it is ${rec.status} (use force)`);
      }
      await this.teardown(rec);
    });
    this.store.remove(id);
  }

  /** Stops everything of a container and removes its sandbox and cgroup. */
  private async teardown(rec: ContainerRecord): Promise<void> {
    if (sameProcess(rec.sandboxPid, rec.sandboxStartTime)) {
      try {
        const conn = SandboxConnection.connect(rec.socket);
        try {
          if (rec.cgroup) for (const pid of this.cgroups.pids(rec.cgroup)) killQuietly(pid);
          await conn.request({ op: 'forget', container: rec.id }).catch(() => undefined);
          await conn.shutdown();
        } finally {
          conn.close();
        }
      } catch (e) {
        // A sandbox that does not answer is killed, and its containers with it.
        this.log.warn({ id: rec.id, err: (e as Error).message }, 'sandbox did not answer at delete; killing it');
        killQuietly(rec.sandboxPid);
      }
    }
    fs.rmSync(rec.socket, { force: true });
    if (rec.cgroup) {
      for (const pid of this.cgroups.pids(rec.cgroup)) killQuietly(pid);
      const left = await this.removeCgroup(rec.cgroup);
      if (left.length) this.log.warn({ id: rec.id, left }, 'cgroup directories could not be removed');
    }
    if (rec.status !== 'creating') {
      const spec = (() => {
        try {
          return this.readSpec(rec.bundle);
        } catch {
          // The bundle is gone already: there are no poststop hooks left to read.
          return null;
        }
      })();
      await this.runPoststop(rec, spec);
    }
  }
}

function killQuietly(pid: number, signal: number | NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function writePidFile(file: string, pid: number): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, String(pid));
  fs.renameSync(tmp, file);
}
