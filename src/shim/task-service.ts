/**
 * containerd.task.v2.Task over the sandbox engine. This file is the glue docs/architecture.md
 * describes: containerd's calls in, engine calls out, events back.
 *
 * Ordering invariants (docs/protocol.md), kept here:
 * - TaskStart / TaskExecStarted of a process is queued before its TaskExit: an exit that
 *   arrives while its start is still in flight waits for the start to be published.
 * - A container's init TaskExit is its last exit: when init dies, the exits of its
 *   running execs are published first (the kernel kills them with the pid namespace;
 *   without one, tsbox kills them), and Wait on init resolves only then.
 * - TaskDelete comes after the init's exit (or after create, for a never-started task).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { containerd, google, io, timestamp } from '../proto';
import { Code, RpcError, ServiceMethods, unary } from '../ttrpc';
import { Engine } from '../sandbox/engine';
import type { Stats } from '../sandbox/cgroups';
import { EngineError } from '../sandbox/errors';
import type { ExitEvent } from '../sandbox/sandbox-process';
import type { Process, Resources, Spec } from '../oci/spec';
import { EventPublisher } from './events';
import { ProcessIO } from './io';
import type { Policy } from './policy';
import { ProcLife, type Verdict } from './proc-state';
import { mountRootfs, unmountRootfs } from './rootfs';
import { SANDBOX_ID_ANNOTATION, withPodFiles } from '../oci/pod';

const T = containerd.task.v2;
const E = containerd.events;
const Status = containerd.v1.types.Status;
const Empty = google.protobuf.Empty;

export const TASK_SERVICE = 'containerd.task.v2.Task';
const PROCESS_SPEC_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/Process';
const RESOURCES_TYPE = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';

/** A process of a container: its phase (src/shim/proc-state.ts), pid and IO. */
class Proc {
  pid = 0;
  readonly life: ProcLife<ExitEvent>;

  constructor(
    readonly execId: string,
    readonly io: ProcessIO,
    readonly spec: Process | null,
  ) {
    this.life = new ProcLife(execId ? 'exec' : 'init', execId);
  }

  get exitStatus(): number {
    return this.life.exit?.status ?? 0;
  }

  get exitedAt(): google.protobuf.ITimestamp | null {
    const exit = this.life.exit;
    return exit ? timestamp(exit.at.getTime()) : null;
  }
}

function check(v: Verdict): void {
  if (!v.ok) throw v.code === 'NotFound' ? RpcError.notFound(v.reason) : RpcError.failedPrecondition(v.reason);
}

/** What the service needs of a sandbox connection: its exit, oom and close events. */
export interface SandboxEvents {
  on(event: 'exit', listener: (ev: ExitEvent) => void): unknown;
  on(event: 'oom', listener: (container: string) => void): unknown;
  on(event: 'close', listener: () => void): unknown;
  removeAllListeners(event?: 'close'): unknown;
  close(): void;
}

/**
 * The engine as the service uses it; an interface so the ordering rules above can be
 * unit-tested with a fake engine (test/unit/task-service.test.ts).
 */
export interface TaskEngine {
  readonly store: { readonly root: string };
  create(id: string, bundle: string, opts: { stdio: number[] }): Promise<{ pid: number }>;
  watch(id: string): SandboxEvents;
  start(id: string): Promise<unknown>;
  exec(id: string, process: Process, opts: { execId: string; stdio: number[] }): Promise<{ pid: number; conn: { close(): void } }>;
  kill(id: string, signal: number, all?: boolean): Promise<void>;
  signalExec(id: string, execId: string, signal: number): Promise<void>;
  killCgroup(id: string, signal: number): void;
  forgetExec(id: string, execId: string): Promise<unknown>;
  delete(id: string, force?: boolean): Promise<unknown>;
}

type FullEngine = TaskEngine & Pick<Engine, 'ps' | 'pause' | 'resume' | 'stats' | 'update'>;

class Container {
  readonly execs = new Map<string, Proc>();
  freezer: 'thawed' | 'pausing' | 'paused' = 'thawed';
  constructor(
    readonly id: string,
    readonly bundle: string,
    readonly init: Proc,
    readonly conn: SandboxEvents,
    readonly ownsPidNs: boolean,
    readonly rootfsMounted: boolean,
  ) {}
}

function rpcError(e: unknown): Error {
  if (e instanceof RpcError) return e;
  if (e instanceof EngineError) {
    const code = {
      NotFound: Code.NOT_FOUND,
      AlreadyExists: Code.ALREADY_EXISTS,
      FailedPrecondition: Code.FAILED_PRECONDITION,
      InvalidArgument: Code.INVALID_ARGUMENT,
      Unavailable: Code.UNAVAILABLE,
      Internal: Code.UNKNOWN,
    }[e.kind];
    return new RpcError(code, e.message);
  }
  return e instanceof Error ? e : new Error(String(e));
}

/** A cgroup's metrics as containerd reads them: the v1 or v2 Metrics message in an Any. */
export function metricsAny(s: Stats): google.protobuf.IAny {
  const value = s.version === 1 ? io.containerd.cgroups.v1.Metrics.encode(s.metrics).finish() : io.containerd.cgroups.v2.Metrics.encode(s.metrics).finish();
  return { type_url: `io.containerd.cgroups.v${s.version}.Metrics`, value };
}

/** Wraps a method: debug lines around each call, and engine errors as ttrpc statuses. */
export function loggedRpc(log: Logger) {
  return <Q, R>(name: string, fn: (req: Q, signal: AbortSignal, park: () => void) => Promise<R> | R) =>
    async (req: Q, ctx: { signal: AbortSignal; park(): void }): Promise<R> => {
      log.debug({ rpc: name, req }, 'rpc');
      const t0 = performance.now();
      try {
        const r = await fn(req, ctx.signal, () => ctx.park());
        log.debug({ rpc: name, ms: Math.round((performance.now() - t0) * 10) / 10 }, 'rpc done');
        return r;
      } catch (e) {
        log.debug({ rpc: name, err: (e as Error).message }, 'rpc failed');
        throw rpcError(e);
      }
    };
}

export class TaskService {
  private readonly containers = new Map<string, Container>();
  private readonly creating = new Set<string>();

  constructor(
    private readonly engine: FullEngine,
    private readonly events: Pick<EventPublisher, 'publish'>,
    private readonly namespace: string,
    private readonly log: Logger,
    private readonly hooks: { idle(): void; created(id: string): void },
    private readonly policy: Policy | null = null,
    /** The shared files' directory of a pod sandbox by id (src/shim/sandbox-service.ts), or null. */
    private readonly podDir: (sandboxId: string) => string | null = () => null,
  ) {}

  /** Execs the daemon still tracks, across its containers. */
  get execCount(): number {
    let n = 0;
    for (const c of this.containers.values()) n += c.execs.size;
    return n;
  }

  get size(): number {
    return this.containers.size;
  }

  /** Bundles of the containers served now, newest last. */
  bundles(): string[] {
    return [...this.containers.values()].map((c) => c.bundle);
  }

  private container(id: string): Container {
    const c = this.containers.get(id);
    if (!c) throw RpcError.notFound(`container ${id} does not exist`);
    return c;
  }

  private proc(id: string, execId: string | null | undefined): { c: Container; p: Proc } {
    const c = this.container(id);
    if (!execId) return { c, p: c.init };
    const p = c.execs.get(execId);
    if (!p) throw RpcError.notFound(`exec ${execId} does not exist in container ${id}`);
    return { c, p };
  }

  async create(req: containerd.task.v2.CreateTaskRequest): Promise<containerd.task.v2.ICreateTaskResponse> {
    const { id } = req;
    if (this.containers.has(id) || this.creating.has(id)) throw RpcError.alreadyExists(`container ${id} already exists`);
    this.creating.add(id);
    try {
      return await this.createTask(req);
    } finally {
      this.creating.delete(id);
      this.hooks.created(id);
    }
  }

  private async createTask(req: containerd.task.v2.CreateTaskRequest): Promise<containerd.task.v2.ICreateTaskResponse> {
    const { id, bundle } = req;
    const rootfs = path.join(bundle, 'rootfs');
    mountRootfs(req.rootfs, rootfs);
    let io: ProcessIO | null = null;
    let created = false;
    let conn: SandboxEvents | null = null;
    try {
      const spec = await this.prepareSpec(id, path.join(bundle, 'config.json'));
      io = await ProcessIO.open({ stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal }, { id, namespace: this.namespace });
      const rec = await this.engine.create(id, bundle, { stdio: io.containerFds });
      created = true;
      io.attach();
      const ownsPidNs = (spec?.linux?.namespaces ?? []).some((n) => n.type === 'pid' && !n.path);
      const init = new Proc('', io, null);
      init.pid = rec.pid;
      conn = this.engine.watch(id);
      const c = new Container(id, bundle, init, conn, ownsPidNs, req.rootfs.length > 0);
      conn.on('exit', (ev: ExitEvent) => void this.onExit(c, ev));
      // Queued at once: it precedes the exit it caused (CRI reads it as OOMKilled).
      conn.on('oom', (container: string) => container === id && this.events.publish('/tasks/oom', 'TaskOOM', E.TaskOOM, { containerId: id }));
      conn.on('close', () => void this.onSandboxLost(c));
      this.containers.set(id, c);
      fs.writeFileSync(path.join(bundle, 'tsbox.json'), JSON.stringify({ root: this.engine.store.root }));
      this.events.publish('/tasks/create', 'TaskCreate', E.TaskCreate, {
        containerId: id,
        bundle,
        rootfs: req.rootfs,
        io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
        checkpoint: req.checkpoint,
        pid: rec.pid,
      });
      return { pid: rec.pid };
    } catch (e) {
      this.containers.delete(id);
      conn?.removeAllListeners('close');
      conn?.close();
      if (created) await this.engine.delete(id, true).catch(() => undefined);
      io?.close();
      if (req.rootfs.length > 0) unmountRootfs(rootfs);
      throw rpcError(e);
    }
  }

  /** The policy sees the bundle's spec first; a changed spec replaces it before anything reads it. */
  /**
   * The bundle's spec as the engine will read it: after the policy (which may refuse or
   * change it) and with a shim-sandboxer pod's shared files (joinPod). Written back once,
   * only when changed. Null when it cannot be read: the engine then refuses the bundle,
   * naming the field.
   */
  private async prepareSpec(id: string, file: string): Promise<Spec | null> {
    let spec: Spec;
    try {
      spec = JSON.parse(fs.readFileSync(file, 'utf8')) as Spec;
    } catch {
      return null;
    }
    let ready = spec;
    if (this.policy) {
      ready = await this.policy.container(this.namespace, id, spec);
      if (ready !== spec) this.log.info({ id, policy: this.policy.file }, 'policy changed the spec');
    }
    ready = this.joinPod(id, ready);
    if (ready === spec) return spec;
    fs.writeFileSync(`${file}.tsbox`, JSON.stringify(ready));
    fs.renameSync(`${file}.tsbox`, file);
    return ready;
  }

  async start(req: containerd.task.v2.StartRequest): Promise<containerd.task.v2.IStartResponse> {
    const { c, p } = this.proc(req.id, req.execId);
    check(p.life.mayStart());
    p.life.begin();
    let held: ExitEvent | null = null;
    try {
      if (!req.execId) {
        await this.engine.start(c.id);
        this.events.publish('/tasks/start', 'TaskStart', E.TaskStart, { containerId: c.id, pid: p.pid });
      } else {
        if (!c.init.life.acceptsExec()) throw RpcError.failedPrecondition(`container ${c.id} is not running`);
        const res = await this.engine.exec(c.id, p.spec as Process, { execId: req.execId, stdio: p.io.containerFds });
        res.conn.close();
        p.io.attach();
        p.pid = res.pid;
        this.events.publish('/tasks/exec-started', 'TaskExecStarted', E.TaskExecStarted, { containerId: c.id, execId: req.execId, pid: res.pid });
      }
      held = p.life.started();
    } catch (e) {
      held = p.life.startFailed();
      // containerd's client waits for a failed exec's IO to end before it reports the
      // error, so every FIFO handle of ours goes now.
      if (req.execId) p.io.close();
      throw rpcError(e);
    } finally {
      // An exit that came while the start was in flight is handled now, in order.
      if (held) void this.onExit(c, held);
      void this.finishInit(c);
    }
    return { pid: p.pid };
  }

  private async onExit(c: Container, ev: ExitEvent): Promise<void> {
    if (ev.container !== c.id) return;
    const p = ev.exec ? c.execs.get(ev.exec) : c.init;
    if (!p?.life.reaped(ev)) return;
    if (ev.exec) return this.publishExecExit(c, p, true);
    if (!c.ownsPidNs) {
      // Nothing takes the execs down with the init: do what the pid namespace would.
      try {
        this.engine.killCgroup(c.id, 9);
      } catch {
        // no record left: nothing to kill
      }
    }
    await this.finishInit(c);
  }

  /** An exec's TaskExit, after its output drained (bounded); then the init's may follow. */
  private async publishExecExit(c: Container, p: Proc, drain: boolean): Promise<void> {
    p.life.publishing();
    if (drain) await p.io.drained(2000);
    p.life.published();
    this.publishExit(c, p);
    void this.finishInit(c);
  }

  /**
   * The container's tsbox-sandbox went away (killed, crashed): nothing can reap or signal
   * its processes any more, so they are killed through the cgroup and reported exited
   * with 137, execs first, as if the container had been SIGKILLed.
   */
  private async onSandboxLost(c: Container): Promise<void> {
    this.log.warn({ id: c.id }, 'lost the connection to tsbox-sandbox');
    try {
      this.engine.killCgroup(c.id, 9);
    } catch {
      // no record left: nothing to kill
    }
    for (const e of c.execs.values()) {
      const phase = e.life.phase;
      if (phase !== 'running' && phase !== 'starting') continue;
      // A starting exec's exit is held and handed back once its start settles.
      if (e.life.reaped({ container: c.id, exec: e.execId, pid: e.pid, status: 137 })) void this.publishExecExit(c, e, false);
    }
    // Kept if the init's own exit was already reaped.
    c.init.life.reaped({ container: c.id, exec: null, pid: c.init.pid, status: 137 });
    await this.finishInit(c);
  }

  /** Publishes the init's exit once no exec of the container is still running. */
  private async finishInit(c: Container): Promise<void> {
    const init = c.init;
    if (init.life.phase !== 'exited') return;
    // Every started exec's TaskExit goes out before the init's (its pty may still drain).
    for (const e of c.execs.values()) if (e.life.holdsInitExit) return;
    init.life.publishing();
    c.freezer = 'thawed';
    await init.io.drained(2000);
    init.life.published();
    this.publishExit(c, init);
  }

  private publishExit(c: Container, p: Proc): void {
    this.events.publish('/tasks/exit', 'TaskExit', E.TaskExit, {
      containerId: c.id,
      id: p.execId || c.id,
      pid: p.pid,
      exitStatus: p.exitStatus,
      exitedAt: p.exitedAt,
    });
  }

  state(req: containerd.task.v2.StateRequest): containerd.task.v2.IStateResponse {
    const { c, p } = this.proc(req.id, req.execId);
    const shown = p.life.shown;
    let status = shown === 'created' ? Status.CREATED : shown === 'running' ? Status.RUNNING : Status.STOPPED;
    if (shown === 'running' && c.freezer !== 'thawed') status = c.freezer === 'paused' ? Status.PAUSED : Status.PAUSING;
    const io = p.io.spec;
    return {
      id: c.id,
      bundle: c.bundle,
      pid: p.pid,
      status,
      stdin: io.stdin,
      stdout: io.stdout,
      stderr: io.stderr,
      terminal: io.terminal,
      exitStatus: p.exitStatus,
      exitedAt: p.exitedAt,
      execId: req.execId,
    };
  }

  async wait(req: containerd.task.v2.WaitRequest, signal: AbortSignal, park: () => void): Promise<containerd.task.v2.IWaitResponse> {
    const { p } = this.proc(req.id, req.execId);
    // As long as the process runs: not a call that holds the connection's budget.
    park();
    await Promise.race([
      p.life.waited,
      new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true })),
    ]);
    return { exitStatus: p.exitStatus, exitedAt: p.exitedAt };
  }

  async kill(req: containerd.task.v2.KillRequest): Promise<void> {
    const { c, p } = this.proc(req.id, req.execId);
    check(p.life.mayKill());
    try {
      if (!req.execId) await this.engine.kill(c.id, req.signal, req.all);
      else await this.engine.signalExec(c.id, req.execId, req.signal);
    } catch (e) {
      // NotFound, or the engine already saw the init stopped before its exit was handled.
      const gone = e instanceof EngineError && (e.kind === 'NotFound' || (!req.execId && e.detail.status === 'stopped'));
      if (gone) throw RpcError.notFound('process already finished');
      throw rpcError(e);
    }
  }

  async delete(req: containerd.task.v2.DeleteRequest): Promise<containerd.task.v2.IDeleteResponse> {
    const { c, p } = this.proc(req.id, req.execId);
    check(p.life.mayDelete());
    if (req.execId) {
      if (p.life.phase === 'created') p.life.abandon(255);
      p.io.close();
      c.execs.delete(req.execId);
      if (p.pid > 0) await this.engine.forgetExec(c.id, req.execId).catch(() => undefined);
      return { pid: p.pid, exitStatus: p.exitStatus, exitedAt: p.exitedAt };
    }
    c.conn.removeAllListeners('close'); // the sandbox is about to go: that is no loss
    // Never started: 137, as runc-v2 says. Before the engine kills it, so the exit the
    // sandbox then reports is a repeat and no TaskExit follows TaskDelete.
    if (p.life.phase === 'created') p.life.abandon(137);
    try {
      await this.engine.delete(c.id, true);
    } catch (e) {
      if (!(e instanceof EngineError && e.kind === 'NotFound')) throw rpcError(e);
    }
    c.conn.close();
    p.io.close();
    for (const e of c.execs.values()) e.io.close();
    if (c.rootfsMounted) unmountRootfs(path.join(c.bundle, 'rootfs'));
    this.containers.delete(c.id);
    this.events.publish('/tasks/delete', 'TaskDelete', E.TaskDelete, {
      containerId: c.id,
      pid: p.pid,
      exitStatus: p.exitStatus,
      exitedAt: p.exitedAt,
      id: '',
    });
    return { pid: p.pid, exitStatus: p.exitStatus, exitedAt: p.exitedAt };
  }

  async pids(req: containerd.task.v2.PidsRequest): Promise<containerd.task.v2.IPidsResponse> {
    const c = this.container(req.id);
    const pids = await this.engine.ps(c.id).catch((e: unknown) => {
      throw rpcError(e);
    });
    const byPid = new Map([...c.execs].filter(([, p]) => p.life.phase === 'running').map(([execId, p]) => [p.pid, execId]));
    return {
      processes: pids.map((pid) => {
        const execId = byPid.get(pid);
        return {
          pid,
          info: execId ? { type_url: 'containerd.runc.v1.ProcessDetails', value: containerd.runc.v1.ProcessDetails.encode({ execId }).finish() } : null,
        };
      }),
    };
  }

  async exec(req: containerd.task.v2.ExecProcessRequest): Promise<void> {
    const c = this.container(req.id);
    if (c.execs.has(req.execId)) throw RpcError.alreadyExists(`exec ${req.execId} already exists in container ${c.id}`);
    if (!c.init.life.acceptsExec()) throw RpcError.failedPrecondition(`container ${c.id} must be running to exec`);
    if (c.freezer !== 'thawed') throw RpcError.failedPrecondition(`container ${c.id} is paused: resume it to exec`);
    if (!req.spec || req.spec.type_url !== PROCESS_SPEC_TYPE) throw RpcError.invalidArgument(`exec spec must be ${PROCESS_SPEC_TYPE}`);
    let spec: Process;
    try {
      spec = JSON.parse(Buffer.from(req.spec.value ?? new Uint8Array()).toString('utf8')) as Process;
    } catch (e) {
      throw RpcError.invalidArgument(`exec spec is not valid JSON: ${(e as Error).message}`);
    }
    // Reserve the id before the first await, so a duplicate cannot slip in.
    const placeholder = new Proc(req.execId, new ProcessIO({ stdin: '', stdout: '', stderr: '', terminal: false }), spec);
    c.execs.set(req.execId, placeholder);
    try {
      if (this.policy)
        spec = await this.policy.exec(this.namespace, c.id, req.execId, spec, JSON.parse(fs.readFileSync(path.join(c.bundle, 'config.json'), 'utf8')) as Spec);
      spec.terminal = req.terminal;
      const io = await ProcessIO.open(
        { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
        { id: c.id, namespace: this.namespace },
      );
      c.execs.set(req.execId, new Proc(req.execId, io, spec));
    } catch (e) {
      c.execs.delete(req.execId);
      throw rpcError(e);
    }
    this.events.publish('/tasks/exec-added', 'TaskExecAdded', E.TaskExecAdded, { containerId: c.id, execId: req.execId });
  }

  async pause(req: containerd.task.v2.PauseRequest): Promise<void> {
    const c = this.container(req.id);
    if (c.freezer !== 'thawed') throw RpcError.failedPrecondition(`container ${c.id} is already paused`);
    c.freezer = 'pausing';
    try {
      await this.engine.pause(c.id);
      c.freezer = 'paused';
    } catch (e) {
      c.freezer = 'thawed';
      throw rpcError(e);
    }
    this.events.publish('/tasks/paused', 'TaskPaused', E.TaskPaused, { containerId: c.id });
  }

  async resume(req: containerd.task.v2.ResumeRequest): Promise<void> {
    const c = this.container(req.id);
    if (c.freezer !== 'paused') throw RpcError.failedPrecondition(`container ${c.id} is not paused`);
    await this.engine.resume(c.id).catch((e: unknown) => {
      throw rpcError(e);
    });
    c.freezer = 'thawed';
    this.events.publish('/tasks/resumed', 'TaskResumed', E.TaskResumed, { containerId: c.id });
  }

  /**
   * A container of a pod whose sandbox tsbox runs (sandboxer "shim") gets the pod's
   * hostname, hosts, resolv.conf and /dev/shm, which CRI mounts itself only for a pause
   * container's pod. After the policy: these are the runtime's mounts, not the request's.
   */
  private joinPod(id: string, spec: Spec): Spec {
    const pod = spec.annotations?.[SANDBOX_ID_ANNOTATION];
    const dir = pod && pod !== id ? this.podDir(pod) : null;
    return dir ? withPodFiles(spec, dir, (name) => fs.existsSync(path.join(dir, name))) : spec;
  }

  async stats(req: containerd.task.v2.StatsRequest): Promise<containerd.task.v2.IStatsResponse> {
    const c = this.container(req.id);
    const s = await this.engine.stats(c.id).catch((e: unknown) => {
      throw rpcError(e);
    });
    return { stats: metricsAny(s) };
  }

  async update(req: containerd.task.v2.UpdateTaskRequest): Promise<void> {
    const c = this.container(req.id);
    if (!req.resources || req.resources.type_url !== RESOURCES_TYPE) throw RpcError.invalidArgument(`resources must be ${RESOURCES_TYPE}`);
    let resources: Resources;
    try {
      resources = JSON.parse(Buffer.from(req.resources.value ?? new Uint8Array()).toString('utf8')) as Resources;
    } catch (e) {
      throw RpcError.invalidArgument(`resources are not valid JSON: ${(e as Error).message}`);
    }
    if (c.init.life.ended) throw RpcError.failedPrecondition(`container ${c.id} is stopped`);
    await this.engine.update(c.id, resources).catch((e: unknown) => {
      throw rpcError(e);
    });
  }

  handlers(): ServiceMethods {
    const empty = (): google.protobuf.IEmpty => ({});
    const unimplemented = (what: string) => () => {
      throw RpcError.unimplemented(`${what}: not implemented`);
    };
    const logged = loggedRpc(this.log);
    return {
      State: unary(
        T.StateRequest,
        T.StateResponse,
        logged('State', (r: containerd.task.v2.StateRequest) => this.state(r)),
      ),
      Create: unary(
        T.CreateTaskRequest,
        T.CreateTaskResponse,
        logged('Create', (r: containerd.task.v2.CreateTaskRequest) => this.create(r)),
      ),
      Start: unary(
        T.StartRequest,
        T.StartResponse,
        logged('Start', (r: containerd.task.v2.StartRequest) => this.start(r)),
      ),
      Delete: unary(
        T.DeleteRequest,
        T.DeleteResponse,
        logged('Delete', (r: containerd.task.v2.DeleteRequest) => this.delete(r)),
      ),
      Pids: unary(
        T.PidsRequest,
        T.PidsResponse,
        logged('Pids', (r: containerd.task.v2.PidsRequest) => this.pids(r)),
      ),
      Pause: unary(
        T.PauseRequest,
        Empty,
        logged('Pause', async (r: containerd.task.v2.PauseRequest) => (await this.pause(r), empty())),
      ),
      Resume: unary(
        T.ResumeRequest,
        Empty,
        logged('Resume', async (r: containerd.task.v2.ResumeRequest) => (await this.resume(r), empty())),
      ),
      Checkpoint: unary(T.CheckpointTaskRequest, Empty, unimplemented('Checkpoint')),
      Kill: unary(
        T.KillRequest,
        Empty,
        logged('Kill', async (r: containerd.task.v2.KillRequest) => (await this.kill(r), empty())),
      ),
      Exec: unary(
        T.ExecProcessRequest,
        Empty,
        logged('Exec', async (r: containerd.task.v2.ExecProcessRequest) => (await this.exec(r), empty())),
      ),
      ResizePty: unary(
        T.ResizePtyRequest,
        Empty,
        logged('ResizePty', (r: containerd.task.v2.ResizePtyRequest) => (this.proc(r.id, r.execId).p.io.resize(r.width, r.height), empty())),
      ),
      CloseIO: unary(
        T.CloseIORequest,
        Empty,
        logged('CloseIO', (r: containerd.task.v2.CloseIORequest) => (r.stdin && this.proc(r.id, r.execId).p.io.closeStdin(), empty())),
      ),
      Update: unary(
        T.UpdateTaskRequest,
        Empty,
        logged('Update', async (r: containerd.task.v2.UpdateTaskRequest) => (await this.update(r), empty())),
      ),
      Wait: unary(
        T.WaitRequest,
        T.WaitResponse,
        logged('Wait', (r: containerd.task.v2.WaitRequest, signal, park) => this.wait(r, signal, park)),
      ),
      Stats: unary(
        T.StatsRequest,
        T.StatsResponse,
        logged('Stats', (r: containerd.task.v2.StatsRequest) => this.stats(r)),
      ),
      Connect: unary(
        T.ConnectRequest,
        T.ConnectResponse,
        logged('Connect', (r: containerd.task.v2.ConnectRequest) => ({ shimPid: process.pid, taskPid: this.containers.get(r.id)?.init.pid ?? 0 })),
      ),
      Shutdown: unary(
        T.ShutdownRequest,
        Empty,
        logged('Shutdown', () => {
          if (this.containers.size === 0) setImmediate(() => this.hooks.idle());
          return empty();
        }),
      ),
    };
  }
}
