/**
 * containerd.runtime.sandbox.v1.Sandbox: containerd 2 (a runtime handler with
 * sandboxer = "shim") asks the shim to run a pod's sandbox itself. tsbox runs no pause
 * container: the sandbox is one engine container whose init holds the pod's namespaces
 * and reaps (src/oci/pod.ts builds its spec), in one tsbox-sandbox. CRI then creates the
 * pod's containers through the Task API with that init's namespaces in their specs, and
 * TaskService mounts the pod's shared files into them (podDirFor).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { containerd, runtime, timestamp } from '../proto';
import { RpcError, ServiceMethods, unary } from '../ttrpc';
import type { Engine } from '../sandbox/engine';
import { EngineError } from '../sandbox/errors';
import type { ExitEvent } from '../sandbox/sandbox-process';
import type { Store } from '../sandbox/store';
import { native } from '../native/addon';
import { MS } from '../oci/linux';
import { hostIpc, POD_FILES, POD_SANDBOX_ANNOTATION, PodConfig, podFileContents, podSandboxSpec } from '../oci/pod';
import { unmountRootfs } from './rootfs';
import { loggedRpc, metricsAny } from './task-service';

const S = containerd.runtime.sandbox.v1;
export const SANDBOX_SERVICE = 'containerd.runtime.sandbox.v1.Sandbox';

/** CRI's /dev/shm for a pod: 64 MiB, as its pause-container flow mounts it. */
const SHM_OPTIONS = 'mode=1777,size=65536k';

type Timestamp = ReturnType<typeof timestamp>;

class Pod {
  pid = 0;
  startedAt: Timestamp | null = null;
  exit: { status: number; at: Timestamp } | null = null;
  private waiters: (() => void)[] = [];

  constructor(
    readonly id: string,
    readonly bundle: string,
    readonly createdAt: Timestamp,
  ) {}

  get podDir(): string {
    return podDirIn(this.bundle);
  }

  exited(status: number): void {
    if (this.exit) return;
    this.exit = { status, at: timestamp() };
    for (const w of this.waiters.splice(0)) w();
  }

  waitExit(): Promise<void> {
    return this.exit ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** Where a pod sandbox's bundle keeps its shared files (the native front's `delete` checks `pod/shm` too). */
function podDirIn(bundle: string): string {
  return path.join(bundle, 'pod');
}

/**
 * The directory of pod `sandboxId`'s shared files when it is a pod sandbox of this
 * engine root (whichever daemon serves it), else null.
 */
export function podDirFor(store: Pick<Store, 'read'>, sandboxId: string): string | null {
  try {
    const rec = store.read(sandboxId);
    return rec.annotations?.[POD_SANDBOX_ANNOTATION] === 'true' ? podDirIn(rec.bundle) : null;
  } catch {
    return null;
  }
}

/** Go's name for this machine's architecture, as image platforms spell it. */
function goArch(): string {
  const names: Record<string, string> = { x64: 'amd64', ia32: '386', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return names[process.arch] ?? process.arch;
}

function decodeConfig(options: { type_url?: string | null; value?: Uint8Array | null } | null | undefined): PodConfig | null {
  if (!options?.value?.length) return null;
  if (!(options.type_url ?? '').endsWith('PodSandboxConfig')) {
    throw RpcError.invalidArgument(`options: tsbox builds a pod sandbox from CRI's PodSandboxConfig, not ${options.type_url}`);
  }
  try {
    return runtime.v1.PodSandboxConfig.decode(options.value);
  } catch (e) {
    throw RpcError.invalidArgument(`options: not a PodSandboxConfig: ${(e as Error).message}`);
  }
}

/**
 * Empties the pod's root of what the engine made there (mount points, device nodes), as
 * containerd removes the bundle's rootfs directory only when empty. Nothing is mounted
 * there on the host (the init's mounts were in its own mount namespace); a directory on
 * another filesystem would be one, and is never descended into.
 */
function emptyRootfs(bundle: string): void {
  const root = path.join(bundle, 'rootfs');
  let dev: number;
  try {
    dev = fs.lstatSync(root).dev;
  } catch {
    return;
  }
  const clear = (dir: string) => {
    for (const name of fs.readdirSync(dir)) {
      const p = path.join(dir, name);
      const st = fs.lstatSync(p);
      if (st.isDirectory()) {
        if (st.dev !== dev) continue;
        clear(p);
        fs.rmdirSync(p);
      } else {
        fs.unlinkSync(p);
      }
    }
  };
  clear(root);
}

/**
 * Removes what the service put in a pod sandbox's bundle (its shared files, /dev/shm
 * mount, spec and the engine's mount points in its root), leaving the bundle as
 * containerd made it; for ShutdownSandbox, and for `delete` when the daemon died.
 */
export function removePodFiles(bundle: string): void {
  unmountRootfs(path.join(podDirIn(bundle), POD_FILES.shm));
  for (const p of [podDirIn(bundle), path.join(bundle, 'config.json'), path.join(bundle, 'tsbox.json')]) fs.rmSync(p, { recursive: true, force: true });
  emptyRootfs(bundle);
}

function readHostFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

export class SandboxService {
  private readonly pods = new Map<string, Pod>();
  private readonly creating = new Set<string>();

  constructor(
    private readonly engine: Engine,
    private readonly log: Logger,
    private readonly hooks: { idle(): void; created(id: string): void },
  ) {}

  get size(): number {
    return this.pods.size + this.creating.size;
  }

  bundles(): string[] {
    return [...this.pods.values()].map((p) => p.bundle);
  }

  private pod(id: string): Pod {
    const p = this.pods.get(id);
    if (!p) throw RpcError.notFound(`sandbox ${id} does not exist`);
    return p;
  }

  async create(req: containerd.runtime.sandbox.v1.CreateSandboxRequest): Promise<void> {
    const id = req.sandboxId;
    if (this.pods.has(id) || this.creating.has(id)) throw RpcError.alreadyExists(`sandbox ${id} already exists`);
    this.creating.add(id);
    try {
      await this.createPod(req);
    } finally {
      this.creating.delete(id);
      this.hooks.created(id);
    }
  }

  private async createPod(req: containerd.runtime.sandbox.v1.CreateSandboxRequest): Promise<void> {
    const id = req.sandboxId;
    if (req.rootfs.length)
      throw RpcError.invalidArgument(`rootfs: a tsbox pod sandbox runs no image, so CreateSandbox takes no rootfs (${req.rootfs.length} mounts given)`);
    if (!path.isAbsolute(req.bundlePath)) throw RpcError.invalidArgument(`bundle_path: "${req.bundlePath}" is not absolute`);
    const config = decodeConfig(req.options);
    const bundle = req.bundlePath;
    const pod = new Pod(id, bundle, timestamp());
    let created = false;
    let devNull = -1;
    try {
      const spec = podSandboxSpec(id, config, req.netnsPath);
      // containerd makes the bundle's (empty) rootfs directory; the init's root stays empty.
      fs.mkdirSync(path.join(bundle, 'rootfs'), { recursive: true, mode: 0o755 });
      fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
      // Where `delete` finds the pod's state root if this daemon dies (src/shim/cleanup.ts).
      fs.writeFileSync(path.join(bundle, 'tsbox.json'), JSON.stringify({ root: this.engine.store.root }));
      fs.mkdirSync(pod.podDir, { mode: 0o755 });
      const files = podFileContents(config, { hostname: os.hostname(), hosts: readHostFile('/etc/hosts'), resolvConf: readHostFile('/etc/resolv.conf') });
      fs.writeFileSync(path.join(pod.podDir, POD_FILES.hostname), files.hostname, { mode: 0o644 });
      fs.writeFileSync(path.join(pod.podDir, POD_FILES.hosts), files.hosts, { mode: 0o644 });
      fs.writeFileSync(path.join(pod.podDir, POD_FILES.resolvConf), files.resolvConf, { mode: 0o644 });
      if (!hostIpc(config)) {
        const dir = path.join(pod.podDir, POD_FILES.shm);
        fs.mkdirSync(dir, { mode: 0o700 });
        native.mount('shm', dir, 'tmpfs', MS.NOEXEC | MS.NOSUID | MS.NODEV, SHM_OPTIONS);
      }
      // The init reads and writes nothing: its stdio is the host's /dev/null, as CRI's
      // NullIO gives a pause container.
      devNull = fs.openSync('/dev/null', 'r+');
      const rec = await this.engine.create(id, bundle, { stdio: [devNull, devNull, devNull], pause: true });
      created = true;
      pod.pid = rec.pid;
      const conn = this.engine.watch(id);
      conn.on('exit', (ev: ExitEvent) => {
        if (ev.container === id && ev.exec === null) pod.exited(ev.status);
      });
      conn.on('close', () => {
        // tsbox-sandbox is gone: nothing reaps or signals the pod through it any more, so
        // its processes go through the cgroup, as TaskService does for a container.
        if (pod.exit) return;
        this.engine.killCgroup(id, 9);
        pod.exited(255);
      });
      void pod.waitExit().then(() => conn.close());
      this.pods.set(id, pod);
      this.log.info({ id, pid: pod.pid, netns: req.netnsPath }, 'pod sandbox created');
    } catch (e) {
      if (created) await this.engine.delete(id, true).catch(() => undefined);
      removePodFiles(bundle);
      throw e;
    } finally {
      if (devNull >= 0) fs.closeSync(devNull);
    }
  }

  async start(req: containerd.runtime.sandbox.v1.StartSandboxRequest): Promise<containerd.runtime.sandbox.v1.IStartSandboxResponse> {
    const pod = this.pod(req.sandboxId);
    if (!pod.startedAt) {
      await this.engine.start(pod.id);
      pod.startedAt = timestamp();
    }
    return { pid: pod.pid, createdAt: pod.createdAt };
  }

  /** Ends the pod's init (SIGTERM first when given time, as for a pause container) and waits for it. */
  async stop(req: containerd.runtime.sandbox.v1.StopSandboxRequest): Promise<void> {
    const pod = this.pod(req.sandboxId);
    if (pod.exit) return;
    const kill = (signal: number) =>
      this.engine.kill(pod.id, signal).catch((e: unknown) => {
        // Gone meanwhile: its exit is on its way.
        if (!(e instanceof EngineError && (e.kind === 'NotFound' || e.kind === 'FailedPrecondition'))) throw e;
      });
    if (req.timeoutSecs > 0) {
      await kill(15);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([pod.waitExit(), new Promise((r) => (timer = setTimeout(r, req.timeoutSecs * 1000)))]);
      clearTimeout(timer);
    }
    if (!pod.exit) await kill(9);
    await pod.waitExit();
  }

  async wait(req: containerd.runtime.sandbox.v1.WaitSandboxRequest): Promise<containerd.runtime.sandbox.v1.IWaitSandboxResponse> {
    const pod = this.pod(req.sandboxId);
    await pod.waitExit();
    return { exitStatus: pod.exit?.status ?? 255, exitedAt: pod.exit?.at ?? null };
  }

  status(req: containerd.runtime.sandbox.v1.SandboxStatusRequest): containerd.runtime.sandbox.v1.ISandboxStatusResponse {
    const pod = this.pod(req.sandboxId);
    const ready = pod.startedAt !== null && pod.exit === null;
    return {
      sandboxId: pod.id,
      pid: pod.exit ? 0 : pod.pid,
      state: ready ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY',
      createdAt: pod.createdAt,
      exitedAt: pod.exit?.at ?? null,
      info: req.verbose ? { runtime: 'tsbox', pid: String(pod.pid), bundle: pod.bundle } : {},
    };
  }

  /** Removes everything of the pod: its init and tsbox-sandbox, cgroup, record and files. */
  async shutdown(req: containerd.runtime.sandbox.v1.ShutdownSandboxRequest): Promise<void> {
    const pod = this.pod(req.sandboxId);
    try {
      await this.engine.delete(pod.id, true);
    } catch (e) {
      if (!(e instanceof EngineError && e.kind === 'NotFound')) throw e;
    }
    pod.exited(137);
    removePodFiles(pod.bundle);
    this.pods.delete(pod.id);
    this.log.info({ id: pod.id }, 'pod sandbox removed');
    this.hooks.idle();
  }

  async metrics(req: containerd.runtime.sandbox.v1.SandboxMetricsRequest): Promise<containerd.runtime.sandbox.v1.ISandboxMetricsResponse> {
    const pod = this.pod(req.sandboxId);
    return { metrics: { timestamp: timestamp(), id: pod.id, data: metricsAny(await this.engine.stats(pod.id)) } };
  }

  handlers(): ServiceMethods {
    const logged = loggedRpc(this.log);
    type Q<K extends keyof typeof S> = InstanceType<(typeof S)[K]>;
    return {
      CreateSandbox: unary(
        S.CreateSandboxRequest,
        S.CreateSandboxResponse,
        logged('CreateSandbox', async (r: Q<'CreateSandboxRequest'>) => (await this.create(r), {})),
      ),
      StartSandbox: unary(
        S.StartSandboxRequest,
        S.StartSandboxResponse,
        logged('StartSandbox', (r: Q<'StartSandboxRequest'>) => this.start(r)),
      ),
      Platform: unary(
        S.PlatformRequest,
        S.PlatformResponse,
        logged('Platform', (r: Q<'PlatformRequest'>) => (this.pod(r.sandboxId), { platform: { os: 'linux', architecture: goArch() } })),
      ),
      StopSandbox: unary(
        S.StopSandboxRequest,
        S.StopSandboxResponse,
        logged('StopSandbox', async (r: Q<'StopSandboxRequest'>) => (await this.stop(r), {})),
      ),
      // Lasts as long as the pod: parked, so it does not hold up the connection's other calls.
      WaitSandbox: unary(
        S.WaitSandboxRequest,
        S.WaitSandboxResponse,
        logged('WaitSandbox', (r: Q<'WaitSandboxRequest'>, _signal, park) => (park(), this.wait(r))),
      ),
      SandboxStatus: unary(
        S.SandboxStatusRequest,
        S.SandboxStatusResponse,
        logged('SandboxStatus', (r: Q<'SandboxStatusRequest'>) => this.status(r)),
      ),
      PingSandbox: unary(
        S.PingRequest,
        S.PingResponse,
        logged('PingSandbox', (r: Q<'PingRequest'>) => (this.pod(r.sandboxId), {})),
      ),
      ShutdownSandbox: unary(
        S.ShutdownSandboxRequest,
        S.ShutdownSandboxResponse,
        logged('ShutdownSandbox', async (r: Q<'ShutdownSandboxRequest'>) => (await this.shutdown(r), {})),
      ),
      SandboxMetrics: unary(
        S.SandboxMetricsRequest,
        S.SandboxMetricsResponse,
        logged('SandboxMetrics', (r: Q<'SandboxMetricsRequest'>) => this.metrics(r)),
      ),
    };
  }
}
