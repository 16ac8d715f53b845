/** The `tsbox` OCI runtime CLI, run as a user (or containerd, or runtime-tools) runs it. */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { makeBundle, Bundle, PROJECT_ROOT } from './bundle';
import { cgroupExists, cgroupProcs, frozen, memoryLimit } from '../cgroupfs';

const TSBOX = path.join(PROJECT_ROOT, 'bin', 'tsbox');

/** A process that exists and is not a zombie (an exited sandbox may wait for its reaper). */
function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbox-cli-'));
const bundles: Bundle[] = [];

function tsbox(args: string[], cwd?: string): { code: number; out: string; err: string } {
  const r = spawnSync(TSBOX, ['--root', root, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

/**
 * For `create`: like runc, the container keeps the stdio it was created with, so a pipe
 * would stay open until it exits. Send both to files, as a caller detaching would.
 */
function tsboxDetached(args: string[], dir: string): { code: number; out: string; err: string } {
  const outFile = path.join(dir, `cli-${Date.now()}.out`);
  const errFile = path.join(dir, `cli-${Date.now()}.err`);
  const out = fs.openSync(outFile, 'w');
  const err = fs.openSync(errFile, 'w');
  const r = spawnSync(TSBOX, ['--root', root, ...args], { stdio: ['ignore', out, err] });
  fs.closeSync(out);
  fs.closeSync(err);
  return { code: r.status ?? -1, out: fs.readFileSync(outFile, 'utf8'), err: fs.readFileSync(errFile, 'utf8') };
}

/** expect.stringMatching as what it is: @types/jest declares its asymmetric matchers `any`. */
const matching = (re: RegExp) => expect.stringMatching(re) as jest.AsymmetricMatcher;

function bundle(prefix: string, args: string[], edit?: Parameters<typeof makeBundle>[2]): Bundle {
  const b = makeBundle(prefix, args, edit);
  bundles.push(b);
  return b;
}

afterAll(() => {
  for (const id of fs.readdirSync(root).filter((f) => !f.startsWith('.'))) tsbox(['delete', '--force', id]);
  for (const b of bundles) b.cleanup();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('tsbox CLI', () => {
  it('run: the container writes to our stdout and its exit code is ours', () => {
    const b = bundle('clirun', ['sh', '-c', 'echo out; echo err >&2; echo $$ >&2; exit 4']);
    const pidFile = path.join(b.dir, 'run.pid');
    const r = tsbox(['run', '--pid-file', pidFile, b.id], b.dir);
    expect(r).toEqual({ code: 4, out: 'out\n', err: matching(/^err\n1\n$/) });
    expect(Number(fs.readFileSync(pidFile, 'utf8'))).toBeGreaterThan(1); // the init's host pid
    expect(tsbox(['list', '-q']).out).toBe('');
  });

  it('create, state, start, ps, list, exec, kill, delete', () => {
    const b = bundle('clilife', ['sleep', '60']);
    // Without --pid-file: with one, the init would be left to our reaper, as runc leaves it
    // (test/e2e/runc-drop-in.test.ts, under the runc-v2 shim, which reaps).
    expect(tsboxDetached(['create', '--bundle', b.dir, b.id], b.dir)).toMatchObject({ code: 0, err: '' });
    const created = JSON.parse(tsbox(['state', b.id]).out) as { pid: number };
    expect(created).toMatchObject({ ociVersion: '1.0.2', id: b.id, status: 'created', bundle: b.dir });

    expect(tsbox(['start', b.id]).code).toBe(0);
    expect(JSON.parse(tsbox(['state', b.id]).out)).toMatchObject({ status: 'running', pid: created.pid });
    expect(JSON.parse(tsbox(['ps', '--format', 'json', b.id]).out)).toEqual([created.pid]);
    const listed = JSON.parse(tsbox(['list', '--format', 'json']).out) as unknown;
    expect(listed).toMatchObject([{ id: b.id, pid: created.pid, status: 'running', bundle: b.dir }]);
    expect(tsbox(['list']).out).toMatch(new RegExp(`^ID\\s+PID\\s+STATUS\\s+BUNDLE\\s+CREATED\\s+OWNER\\n${b.id}\\s+${created.pid}\\s+running\\s`));

    expect(tsbox(['exec', b.id, 'sh', '-c', 'echo in $(hostname); exit 5'])).toEqual({ code: 5, out: `in ${b.id}\n`, err: '' });
    expect(tsbox(['pause', b.id]).code).toBe(0);
    expect(JSON.parse(tsbox(['state', b.id]).out)).toMatchObject({ status: 'paused' });
    expect(frozen(`tsbox-test/${b.id}`)).toBe(true);
    expect(tsbox(['resume', b.id]).code).toBe(0);
    expect(JSON.parse(tsbox(['state', b.id]).out)).toMatchObject({ status: 'running' });
    const update = spawnSync(TSBOX, ['--root', root, 'update', '--resources', '-', b.id], {
      input: JSON.stringify({ memory: { limit: 48 << 20 } }),
      encoding: 'utf8',
    });
    expect([update.status, update.stderr]).toEqual([0, '']);
    expect(memoryLimit(`tsbox-test/${b.id}`)).toBe(String(48 << 20));
    const proc = path.join(b.dir, 'process.json');
    fs.writeFileSync(proc, JSON.stringify({ ...b.spec.process, args: ['id', '-u'], user: { uid: 1000, gid: 1000 } }));
    expect(tsbox(['exec', '--process', proc, b.id])).toEqual({ code: 0, out: '1000\n', err: '' });

    expect(tsbox(['delete', b.id])).toMatchObject({ code: 1, err: matching(/it is running \(use force\)/) });
    expect(tsbox(['kill', b.id, 'KILL']).code).toBe(0);
    // kill returns once the signal is sent; state settles when the sandbox has reaped it.
    let st: { status: string };
    do st = JSON.parse(tsbox(['state', b.id]).out) as { status: string };
    while (st.status !== 'stopped');
    // runc's words, by which containerd's runc-v2 shim knows the process is gone.
    expect(tsbox(['kill', b.id, 'KILL'])).toMatchObject({ code: 1, err: `tsbox: cannot kill container ${b.id}: container not running\n` });
    expect(tsbox(['delete', b.id]).code).toBe(0);
    expect(tsbox(['state', b.id])).toMatchObject({ code: 1, err: `tsbox: container ${b.id} does not exist\n` });
  });

  it('hands the pty master to --console-socket and runs the process on it', async () => {
    const b = bundle('clitty', ['sh', '-c', 'tty; echo done'], (s) => {
      s.process!.terminal = true;
    });
    const sock = path.join(b.dir, 'console.sock');
    const out = path.join(b.dir, 'console.out');
    const receiver = spawn(path.join(PROJECT_ROOT, 'test', 'tools', 'console-receiver.py'), [sock, out], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => receiver.stdout.once('data', () => resolve()));
    const finished = new Promise<void>((resolve) => receiver.once('exit', () => resolve()));
    expect(tsbox(['run', '--console-socket', sock, b.id], b.dir).code).toBe(0);
    await finished;
    expect(fs.readFileSync(out, 'utf8').split('\r\n').slice(0, 2)).toEqual(['/dev/pts/0', 'done']);
  });

  it("fails create with the init's own error, exit status 1 and nothing left", () => {
    const b = bundle('clibadns', ['true'], (s) => {
      s.linux!.namespaces!.push({ type: 'cgroup', path: '/proc/self/ns/ipc' });
    });
    const r = tsboxDetached(['create', '--bundle', b.dir, b.id], b.dir);
    expect(r).toMatchObject({ code: 1, out: '' });
    expect(r.err).toBe('tsbox: linux.namespaces[5] (cgroup): setns /proc/self/ns/ipc: EINVAL (invalid argument)\n');
    expect(tsbox(['list', '-q']).out).toBe('');
    expect(cgroupExists(`tsbox-test/${b.id}`)).toBe(false);
  });

  it('says clearly what is wrong', () => {
    expect(tsbox(['create', '--bundle', '/nonexistent', 'nobundle'])).toMatchObject({ code: 1, err: matching(/^tsbox: .*config\.json/) });
    expect(tsbox(['kill', 'whatever', 'SIGNOPE'])).toMatchObject({ code: 2, err: matching(/^tsbox: unknown signal "SIGNOPE"/) });
    expect(tsbox(['frobnicate'])).toMatchObject({ code: 2, err: matching(/^tsbox: unknown command "frobnicate"/) });
    expect(tsbox(['delete', '--force', 'never-existed']).code).toBe(0);
    expect(fs.readdirSync(root).filter((f) => !f.startsWith('.'))).toEqual([]); // .sockets/ stays
    expect(fs.readdirSync(path.join(root, '.sockets'))).toEqual([]);
  });

  it('--systemd-cgroup: a slice:prefix:name cgroupsPath is the cgroupfs path systemd would give it', () => {
    const b = bundle('clisystemd', ['sleep', '60'], (s) => {
      // As the runc-v2 shim with SystemdCgroup = true passes it: slice:prefix:name (the id).
      s.linux!.cgroupsPath = `tsboxtest-cli.slice:tsbox:${path.basename(s.linux!.cgroupsPath!)}`;
    });
    expect(tsboxDetached(['--systemd-cgroup', 'create', '--bundle', b.dir, b.id], b.dir)).toMatchObject({ code: 0, err: '' });
    const pid = (JSON.parse(tsbox(['--systemd-cgroup', 'state', b.id]).out) as { pid: number }).pid;
    const rel = `tsboxtest.slice/tsboxtest-cli.slice/tsbox-${b.id}.scope`;
    expect(cgroupProcs(rel).trim()).toBe(String(pid));
    expect(tsbox(['--systemd-cgroup', 'delete', '--force', b.id]).code).toBe(0);
    // The slices tsbox made for it go with its last container.
    expect(cgroupExists('tsboxtest.slice')).toBe(false);
  });

  it('top shows the containers the CLI made, with no namespace', () => {
    const b = bundle('clitop', ['sleep', '60']);
    expect(tsboxDetached(['create', '--bundle', b.dir, b.id], b.dir)).toMatchObject({ code: 0, err: '' });
    const pid = (JSON.parse(tsbox(['state', b.id]).out) as { pid: number }).pid;
    const top = tsbox(['top', '--json']);
    expect(JSON.parse(top.out)).toEqual([
      expect.objectContaining({ namespace: '', id: b.id, status: 'created', pid, cgroup: `/tsbox-test/${b.id}`, execs: 0 }),
    ]);
    expect(tsbox(['delete', '--force', b.id]).code).toBe(0);
  });

  it('writes errors to --log as JSON when asked', () => {
    const log = path.join(root, '..', `tsbox-cli-log-${process.pid}.json`);
    const r = spawnSync(TSBOX, ['--root', root, '--log', log, '--log-format', 'json', 'state', 'ghost'], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    const entry = JSON.parse(fs.readFileSync(log, 'utf8').trim()) as unknown;
    fs.rmSync(log);
    expect(entry).toMatchObject({ level: 'error', msg: 'container ghost does not exist' });
  });
});

/**
 * bin/tsbox answers state, start, kill, ps, delete and features itself (addon/crates/cli);
 * the Node CLI is the reference. Each answer is taken both ways: natively with Node made
 * unusable (TSBOX_NODE=/bin/false), so a command that fell back would fail, and through
 * the Node CLI (TSBOX_CLI_NODE=1).
 */
describe('the native CLI answers as the Node CLI does', () => {
  type Answer = { code: number; out: unknown; err: string };
  function answer(args: string[], env: Record<string, string>): Answer {
    const r = spawnSync(TSBOX, ['--root', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out: unknown = r.stdout;
    try {
      out = JSON.parse(r.stdout);
    } catch {
      // not JSON: compared as text
    }
    return { code: r.status ?? -1, out, err: r.stderr };
  }
  const readRecord = (id: string) => JSON.parse(fs.readFileSync(path.join(root, id, 'meta.json'), 'utf8')) as { sandboxPid: number };
  /** What a delete may leave: the state directory, the cgroup, a live tsbox-sandbox. */
  const leftFor = (id: string, sandboxPid: number) => ({
    state: fs.existsSync(path.join(root, id)),
    cgroup: cgroupExists(`tsbox-test/${id}`),
    sandbox: alive(sandboxPid),
  });
  const native = (args: string[]) => answer(args, { TSBOX_NODE: '/bin/false' });
  const node = (args: string[]) => answer(args, { TSBOX_CLI_NODE: '1' });
  const same = (args: string[]) => {
    const n = native(args);
    expect([args, n]).toEqual([args, node(args)]);
    return n;
  };

  it("through a container's life, and for one that does not exist", () => {
    const b = bundle('clinative', ['sleep', '60']);
    expect(tsboxDetached(['create', '--bundle', b.dir, b.id], b.dir)).toMatchObject({ code: 0, err: '' });
    expect(same(['state', b.id]).out).toMatchObject({ id: b.id, status: 'created' });
    same(['ps', '--format', 'json', b.id]);
    same(['ps', b.id]);
    expect(same(['features']).code).toBe(0);
    for (const args of [
      ['state', 'ghost'],
      ['start', 'ghost'],
      ['kill', 'ghost', '9'],
      ['ps', 'ghost'],
      ['delete', 'ghost'],
    ]) {
      expect(same(args)).toMatchObject({ code: 1, err: 'tsbox: container ghost does not exist\n' });
    }
    expect(same(['delete', '--force', 'ghost'])).toEqual({ code: 0, out: '', err: '' });

    expect(native(['start', b.id])).toEqual({ code: 0, out: '', err: '' });
    const running = same(['state', b.id]);
    expect(running.out).toMatchObject({ status: 'running' });
    expect(same(['start', b.id])).toMatchObject({ code: 1, err: `tsbox: cannot start container ${b.id}: it is running\n` });
    expect(same(['ps', '--format', 'json', b.id]).out).toEqual([(running.out as { pid: number }).pid]);

    expect(native(['kill', b.id, '9'])).toEqual({ code: 0, out: '', err: '' });
    // The native state first: the Node CLI records the exit when it sees it.
    let st: Answer;
    do st = native(['state', b.id]);
    while ((st.out as { status: string }).status !== 'stopped');
    expect(st).toEqual(node(['state', b.id]));
    expect(same(['kill', b.id, '9'])).toMatchObject({ code: 1, err: `tsbox: cannot kill container ${b.id}: container not running\n` });
    expect(same(['start', b.id])).toMatchObject({ code: 1, err: `tsbox: cannot start container ${b.id}: it is stopped\n` });
    expect(same(['ps', '--format', 'json', b.id]).out).toEqual([]);
    const sandboxPid = readRecord(b.id).sandboxPid;
    expect(native(['delete', b.id])).toEqual({ code: 0, out: '', err: '' });
    expect(leftFor(b.id, sandboxPid)).toEqual({ state: false, cgroup: false, sandbox: false });
  });

  it('deletes a created container, and a running one only with --force, leaving nothing', () => {
    for (const start of [false, true]) {
      const b = bundle('clinatdel', ['sleep', '60']);
      expect(tsboxDetached(['create', '--bundle', b.dir, b.id], b.dir)).toMatchObject({ code: 0, err: '' });
      if (start) {
        expect(native(['start', b.id]).code).toBe(0);
        expect(same(['delete', b.id])).toMatchObject({ code: 1, err: `tsbox: cannot delete container ${b.id}: it is running (use force)\n` });
      }
      const sandboxPid = readRecord(b.id).sandboxPid;
      expect(native(['delete', ...(start ? ['--force'] : []), b.id])).toEqual({ code: 0, out: '', err: '' });
      expect([start, leftFor(b.id, sandboxPid)]).toEqual([start, { state: false, cgroup: false, sandbox: false }]);
    }
  });

  it('writes its errors to --log as the Node CLI does', () => {
    const logs = ['native', 'node'].map((w) => path.join(root, '..', `tsbox-cli-${w}-${process.pid}.log`));
    for (const format of ['json', 'text']) {
      native(['--log', logs[0], '--log-format', format, 'state', 'ghost']);
      node(['--log', logs[1], '--log-format', format, 'state', 'ghost']);
    }
    const [n, j] = logs.map((l) => fs.readFileSync(l, 'utf8').replace(/\d{4}-\d\d-\d\dT[\d:.]+Z/g, 'TIME'));
    logs.forEach((l) => fs.rmSync(l));
    expect(n).toBe(j);
    expect(n.split('\n')).toEqual([
      JSON.stringify({ level: 'error', msg: 'container ghost does not exist', time: 'TIME' }),
      'time="TIME" level=error msg="container ghost does not exist"',
      '',
    ]);
  });
});

describe('the OCI features document', () => {
  // containerd.types.RuntimeInfo as containerd 2 decodes the shim's -info answer.
  const introspection = protobuf.parse(`
    syntax = "proto3";
    package containerd.types;
    message Any { string type_url = 1; bytes value = 2; }
    message RuntimeVersion { string version = 1; string revision = 2; }
    message RuntimeInfo {
      string name = 1;
      RuntimeVersion version = 2;
      Any options = 3;
      Any features = 4;
      map<string, string> annotations = 5;
    }`).root;

  it('is what `tsbox features` prints and what the shim answers -info with', () => {
    const printed = tsbox(['features']);
    expect(printed.code).toBe(0);
    const doc = JSON.parse(printed.out) as { mountOptions: string[]; linux: { namespaces: string[]; mountExtensions: { idmap: { enabled: boolean } } } };
    expect(doc.mountOptions).toEqual(expect.arrayContaining(['rro', 'rbind', 'rshared', 'nosymfollow']));
    expect(doc.linux.namespaces).toEqual(['cgroup', 'ipc', 'mount', 'network', 'pid', 'user', 'uts']);
    expect(doc.linux.mountExtensions.idmap.enabled).toBe(false);

    const options = Buffer.from('\n\x19runtimeoptions.v1.Options\x12\x00', 'binary');
    const r = spawnSync(path.join(PROJECT_ROOT, 'bin', 'containerd-shim-tsbox-v2'), ['-info'], { input: options });
    expect(r.status).toBe(0);
    const info = introspection.lookupType('containerd.types.RuntimeInfo').decode(r.stdout).toJSON() as {
      name: string;
      version: { version: string };
      options: { typeUrl: string };
      features: { typeUrl: string; value: string };
    };
    expect(info.name).toBe('io.containerd.tsbox.v2');
    expect(info.version.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(info.options.typeUrl).toBe('runtimeoptions.v1.Options');
    expect(info.features.typeUrl).toBe('types.containerd.io/opencontainers/runtime-spec/1/features/Features');
    expect(JSON.parse(Buffer.from(info.features.value, 'base64').toString())).toEqual(doc);
  });

  it("is what containerd 2's runc-v2 shim answers -info with when bin/tsbox is its runc", () => {
    // runc.v1.Options { binary_name (6) } in an Any: what a handler with BinaryName sends.
    const binary = Buffer.from(TSBOX);
    const opts = Buffer.concat([Buffer.from([0x32, binary.length]), binary]);
    const typeUrl = Buffer.from('containerd.runc.v1.Options');
    const any = Buffer.concat([Buffer.from([0x0a, typeUrl.length]), typeUrl, Buffer.from([0x12, opts.length]), opts]);
    const shim = path.join(execFileSync(path.join(PROJECT_ROOT, 'scripts', 'containerd2-dir'), { encoding: 'utf8' }).trim(), 'containerd-shim-runc-v2');
    const r = spawnSync(shim, ['-info'], { input: any });
    expect([r.status, r.stderr.toString()]).toEqual([0, '']);
    const info = introspection.lookupType('containerd.types.RuntimeInfo').decode(r.stdout).toJSON() as { features: { value: string } };
    const ours = JSON.parse(tsbox(['features']).out) as { linux: { seccomp: { supportedFlags?: string[] } } };
    // The shim re-encodes the document with Go's types, whose omitempty drops an empty list.
    if (ours.linux.seccomp.supportedFlags?.length === 0) delete ours.linux.seccomp.supportedFlags;
    expect(JSON.parse(Buffer.from(info.features.value, 'base64').toString())).toEqual(ours);
  });
});
