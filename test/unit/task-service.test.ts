/**
 * TaskService's ordering rules against a fake engine: exits are driven by the test, so
 * each race the e2e suites can only hope to hit is played out here, every time.
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { TaskService, type TaskEngine } from '../../src/shim/task-service';
import type { ExitEvent } from '../../src/sandbox/sandbox-process';
import { EngineError } from '../../src/sandbox/errors';
import { expectStatus } from '../../src/sandbox/status';
import type { containerd } from '../../src/proto';

class FakeConn extends EventEmitter {
  close(): void {
    this.removeAllListeners();
  }
}

/** Resolves when the test says so: an engine call still in flight. */
function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

class FakeEngine implements TaskEngine {
  readonly store = { root: '/run/fake' };
  readonly conn = new FakeConn();
  startGate: Promise<void> = Promise.resolve();
  killed: string[] = [];
  private nextPid = 100;
  create(): Promise<{ pid: number }> {
    return Promise.resolve({ pid: this.nextPid++ });
  }
  watch(): FakeConn {
    return this.conn;
  }
  async start(): Promise<void> {
    await this.startGate;
  }
  execGate: Promise<void> = Promise.resolve();
  async exec(): Promise<{ pid: number; conn: { close(): void } }> {
    await this.execGate;
    return { pid: this.nextPid++, conn: { close: () => undefined } };
  }
  killError: Error | null = null;
  kill(): Promise<void> {
    return this.killError ? Promise.reject(this.killError) : Promise.resolve();
  }
  signalExec(): Promise<void> {
    return Promise.resolve();
  }
  killCgroup(id: string): void {
    this.killed.push(id);
  }
  forgetExec(): Promise<void> {
    return Promise.resolve();
  }
  /** What the sandbox does while the engine deletes (e.g. report the killed init's exit). */
  duringDelete: () => void = () => undefined;
  async delete(): Promise<void> {
    this.duringDelete();
    await settle();
  }
  ps(): Promise<number[]> {
    return Promise.resolve([]);
  }
  pause(): Promise<void> {
    return Promise.resolve();
  }
  resume(): Promise<void> {
    return Promise.resolve();
  }
  stats(): never {
    throw new Error('not used');
  }
  update(): Promise<void> {
    return Promise.resolve();
  }
  exit(ev: Partial<ExitEvent> & { status: number }): void {
    this.conn.emit('exit', { container: 'c1', exec: null, pid: 0, ...ev });
  }
}

const quiet = pino({ level: 'silent' });
const noIO = { stdin: '', stdout: '', stderr: '', terminal: false };

function setup(pidNamespace = true): { svc: TaskService; engine: FakeEngine; topics: string[]; bundle: string } {
  const bundle = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbox-unit-task-'));
  const namespaces = pidNamespace ? [{ type: 'pid' }, { type: 'mount' }] : [{ type: 'mount' }];
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ ociVersion: '1.0.2', linux: { namespaces } }));
  const engine = new FakeEngine();
  const topics: string[] = [];
  const events = {
    publish: (topic: string, _name: string, _type: unknown, msg: unknown) => topics.push(`${topic} ${(msg as { id?: string }).id ?? ''}`.trim()),
  };
  const svc = new TaskService(engine, events, 'default', quiet, { idle: () => undefined, created: () => undefined });
  return { svc, engine, topics, bundle };
}

const createReq = (bundle: string) => ({ id: 'c1', bundle, rootfs: [], ...noIO, checkpoint: '' }) as unknown as containerd.task.v2.CreateTaskRequest;
const execReq = (execId: string) =>
  ({
    id: 'c1',
    execId,
    ...noIO,
    spec: { type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify({ args: ['true'], cwd: '/' })) },
  }) as unknown as containerd.task.v2.ExecProcessRequest;
const req = <T>(r: object) => r as T;

/** Lets every queued microtask and timer-free continuation run. */
const settle = () => new Promise((r) => setImmediate(r));

/** c1 created and started, exec e1 added and started. */
async function runningWithExec(svc: TaskService, bundle: string): Promise<void> {
  await svc.create(createReq(bundle));
  await svc.start(req({ id: 'c1' }));
  await svc.exec(execReq('e1'));
  await svc.start(req({ id: 'c1', execId: 'e1' }));
}

describe('TaskService ordering', () => {
  const bundles: string[] = [];
  afterAll(() => bundles.forEach((b) => fs.rmSync(b, { recursive: true, force: true })));

  it("publishes a running exec's exit before the init's, and Wait on the init resolves only then", async () => {
    const { svc, engine, topics, bundle } = setup();
    bundles.push(bundle);
    await runningWithExec(svc, bundle);
    let waited = false;
    const wait = svc.wait(req({ id: 'c1' }), new AbortController().signal, () => undefined).then(() => (waited = true));
    engine.exit({ status: 137 });
    await settle();
    expect(topics.filter((t) => t.startsWith('/tasks/exit'))).toEqual([]);
    expect(waited).toBe(false);
    engine.exit({ exec: 'e1', status: 137 });
    await wait;
    expect(topics.filter((t) => t.startsWith('/tasks/exit'))).toEqual(['/tasks/exit e1', '/tasks/exit c1']);
  });

  it('publishes an exit that arrives while the start is in flight after TaskStart', async () => {
    const { svc, engine, topics, bundle } = setup();
    bundles.push(bundle);
    await svc.create(createReq(bundle));
    const g = gate();
    engine.startGate = g.promise;
    const started = svc.start(req({ id: 'c1' }));
    engine.exit({ status: 0 });
    await settle();
    expect(topics).toEqual(['/tasks/create']);
    g.open();
    await started;
    await settle();
    expect(topics).toEqual(['/tasks/create', '/tasks/start', '/tasks/exit c1']);
  });

  it('reports a sandbox lost during the start as an exit after TaskStart, running execs first', async () => {
    const { svc, engine, topics, bundle } = setup();
    bundles.push(bundle);
    await runningWithExec(svc, bundle);
    await svc.exec(execReq('e2'));
    engine.conn.emit('close');
    await svc.wait(req({ id: 'c1' }), new AbortController().signal, () => undefined);
    // e2 never started: no exit of its own.
    expect(topics.filter((t) => t.startsWith('/tasks/exit'))).toEqual(['/tasks/exit e1', '/tasks/exit c1']);
    expect(svc.state(req({ id: 'c1' }))).toMatchObject({ exitStatus: 137 });

    const second = setup();
    bundles.push(second.bundle);
    await second.svc.create(createReq(second.bundle));
    const g = gate();
    second.engine.startGate = g.promise;
    const started = second.svc.start(req({ id: 'c1' }));
    second.engine.conn.emit('close');
    await settle();
    expect(second.topics).toEqual(['/tasks/create']);
    g.open();
    await started;
    await settle();
    expect(second.topics).toEqual(['/tasks/create', '/tasks/start', '/tasks/exit c1']);
  });

  it("keeps an exec that was starting when the sandbox went: its exit, then the init's", async () => {
    const { svc, engine, topics, bundle } = setup();
    bundles.push(bundle);
    await svc.create(createReq(bundle));
    await svc.start(req({ id: 'c1' }));
    await svc.exec(execReq('e1'));
    const g = gate();
    engine.execGate = g.promise;
    const started = svc.start(req({ id: 'c1', execId: 'e1' }));
    engine.conn.emit('close');
    await settle();
    expect(topics.filter((t) => t.startsWith('/tasks/exit'))).toEqual([]);
    g.open();
    await started;
    await svc.wait(req({ id: 'c1' }), new AbortController().signal, () => undefined);
    expect(topics.filter((t) => t.startsWith('/tasks/exit'))).toEqual(['/tasks/exit e1', '/tasks/exit c1']);
  });

  it('answers Delete of a never-started task with 137, whatever the sandbox reports meanwhile', async () => {
    const { svc, engine, topics, bundle } = setup();
    bundles.push(bundle);
    await svc.create(createReq(bundle));
    engine.duringDelete = () => engine.exit({ status: 0 });
    expect(await svc.delete(req({ id: 'c1' }))).toMatchObject({ exitStatus: 137 });
    await settle();
    expect(topics).toEqual(['/tasks/create', '/tasks/delete']);
  });

  it('kills the execs through the cgroup when the init dies without its own pid namespace', async () => {
    const { svc, engine, topics, bundle } = setup(false);
    bundles.push(bundle);
    await runningWithExec(svc, bundle);
    engine.exit({ status: 0 });
    await settle();
    expect(engine.killed).toEqual(['c1']);
    engine.exit({ exec: 'e1', status: 137 });
    await svc.wait(req({ id: 'c1' }), new AbortController().signal, () => undefined);
    expect(topics.filter((t) => t.startsWith('/tasks/exit'))).toEqual(['/tasks/exit e1', '/tasks/exit c1']);
  });

  it('answers Kill of a finished init with NotFound, and Delete only after its exit', async () => {
    const { svc, engine, topics, bundle } = setup();
    bundles.push(bundle);
    await svc.create(createReq(bundle));
    await svc.start(req({ id: 'c1' }));
    await expect(svc.delete(req({ id: 'c1' }))).rejects.toMatchObject({ message: 'cannot delete a running process' });
    engine.exit({ status: 3 });
    await svc.wait(req({ id: 'c1' }), new AbortController().signal, () => undefined);
    await expect(svc.kill(req({ id: 'c1', signal: 9 }))).rejects.toMatchObject({ message: 'process already finished' });
    expect(await svc.delete(req({ id: 'c1' }))).toMatchObject({ exitStatus: 3 });
    expect(topics).toEqual(['/tasks/create', '/tasks/start', '/tasks/exit c1', '/tasks/delete']);
  });

  it('answers NotFound when the engine saw the init stop before its exit reached the service', async () => {
    const { svc, engine, bundle } = setup();
    bundles.push(bundle);
    await svc.create(createReq(bundle));
    await svc.start(req({ id: 'c1' }));
    try {
      expectStatus('c1', 'stopped', ['running'], 'kill');
    } catch (e) {
      engine.killError = e as Error;
    }
    await expect(svc.kill(req({ id: 'c1', signal: 15 }))).rejects.toMatchObject({ message: 'process already finished' });
    engine.killError = EngineError.failedPrecondition('cannot kill container c1: the sandbox is busy');
    await expect(svc.kill(req({ id: 'c1', signal: 15 }))).rejects.toMatchObject({ message: 'cannot kill container c1: the sandbox is busy' });
  });
});
