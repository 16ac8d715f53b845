/**
 * containerd → containerd-shim-tsbox-v2 → engine, driven through `ctr` as a user types
 * it. Where it helps, the same scenario runs under io.containerd.runc.v2 and the two are
 * compared: runc-v2 is the expected behaviour.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroupExists, memoryCgroupOf, memoryLimit } from '../cgroupfs';
import {
  alive,
  ctr,
  removeTask as remove,
  rig,
  shimDaemons,
  taskPid,
  taskStatus,
  taskTopicsOfRun,
  uniqueId,
  waitUntil,
  CONTAINERD_SCRIPT,
  PROJECT_ROOT,
} from '../rig/rig';
import { execFileSync } from 'node:child_process';

const TSBOX = ['--runtime', 'io.containerd.tsbox.v2'];
const RUNC = ['--runtime', 'io.containerd.runc.v2'];
const IMAGE = 'localhost/busybox:latest';

/** `ctr run --rm` under a runtime; stdout, stderr, exit code. */
function run(runtime: string[], args: string[], cmd: string[]) {
  return ctr(['run', '--rm', ...runtime, ...args, IMAGE, uniqueId('t'), ...cmd]);
}

/** Waits until containerd shows the task in `status`. */
const until = (id: string, status: string) => waitUntil(async () => (await taskStatus(id)) === status, `${id} ${status}`);

describe('ctr run --runtime io.containerd.tsbox.v2', () => {
  it('runs a container, prints its output and passes on exit codes 0 and 7', async () => {
    expect(await run(TSBOX, [], ['sh', '-c', 'echo hello from $(cat /proc/1/comm)'])).toEqual({ code: 0, stdout: 'hello from sh\n', stderr: '' });
    expect((await run(TSBOX, [], ['sh', '-c', 'exit 7'])).code).toBe(7);
  });

  it('sees what runc-v2 shows inside: env, cwd, read-only rootfs, capabilities, mounts', async () => {
    const probe = [
      'sh',
      '-c',
      'echo $FOO; pwd; id; grep -E "^Cap(Eff|Bnd)" /proc/self/status; touch /x 2>&1; cut -d" " -f2,3 /proc/mounts | sort; ls /dev; echo home=$HOME oom=$(cat /proc/self/oom_score_adj)',
    ];
    const args = ['--env', 'FOO=bar', '--cwd', '/tmp', '--read-only', '--cap-add', 'CAP_SYS_ADMIN', '--cap-drop', 'CAP_CHOWN'];
    const mine = await run(TSBOX, args, probe);
    const theirs = await run(RUNC, args, probe);
    expect(mine.code).toBe(theirs.code);
    expect(mine.stdout).toBe(theirs.stdout);
    expect(mine.stdout).toMatch(/^bar\n\/tmp\n/);
    expect(mine.stdout).toMatch(/Read-only file system/);
    expect(mine.stdout).toMatch(/\nhome=\/root oom=\d+\n$/);
  });

  it('bind mounts with --mount and shares the host network with --net-host', async () => {
    const dir = fs.mkdtempSync(path.join(rig().dir, 'mnt-'));
    fs.writeFileSync(path.join(dir, 'hello'), 'from the host\n');
    const r = await run(
      TSBOX,
      ['--mount', `type=bind,src=${dir},dst=/data,options=rbind:ro`, '--net-host'],
      ['sh', '-c', 'cat /data/hello; touch /data/x 2>&1; ls /sys/class/net | sort'],
    );
    const hostLinks = fs.readdirSync('/sys/class/net').sort().join('\n');
    expect(r.stdout).toBe(`from the host\ntouch: /data/x: Read-only file system\n${hostLinks}\n`);
  });

  it('applies --privileged, --seccomp, --uidmap/--gidmap and --memory-limit as runc-v2 does', async () => {
    const probe = ['sh', '-c', 'grep -E "^(CapEff|Seccomp|NoNewPrivs)" /proc/self/status; cat /proc/self/uid_map /proc/self/gid_map | tr -s " "'];
    for (const args of [['--privileged'], ['--seccomp'], ['--uidmap', '0:300000:65536', '--gidmap', '0:300000:65536']]) {
      const mine = await run(TSBOX, args, probe);
      expect(mine).toEqual(await run(RUNC, args, probe));
    }
    const limit = await run(TSBOX, ['--memory-limit', String(32 << 20)], ['cat', '/proc/self/cgroup']);
    expect(memoryCgroupOf(limit.stdout)).toMatch(/^\/default\/t-/);
  });

  it('observes its memory limit in the cgroup while running', async () => {
    const id = uniqueId('mem');
    expect((await ctr(['run', '-d', ...TSBOX, '--memory-limit', String(48 << 20), IMAGE, id, 'sleep', '60'])).code).toBe(0);
    try {
      expect(memoryLimit(`default/${id}`)).toBe(String(48 << 20));
    } finally {
      await remove(id);
    }
    expect(cgroupExists(`default/${id}`)).toBe(false);
  });

  it('feeds stdin to the container and closes it at EOF', async () => {
    const id = uniqueId('stdin');
    const child = spawn('ctr', ['--address', rig().address, 'run', '--rm', ...TSBOX, IMAGE, id, 'sh', '-c', 'cat; echo " eof"'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const done = new Promise<number>((r) => child.on('close', (code) => r(code ?? -1)));
    // ctr forwards stdin EOF only once the task exists (docs/architecture.md).
    await until(id, 'RUNNING');
    child.stdin.end('abc');
    expect(await done).toBe(0);
    expect(out).toBe('abc eof\n');
  });

  it('runs -t under a pty: tty and the terminal size inside', () => {
    const id = uniqueId('tty');
    // ctr sends the size only after the start: wait inside for a non-zero one.
    const wait = 'while :; do stty size >/tmp/s 2>/dev/null; read s </tmp/s; [ -n "$s" ] && [ "$s" != "0 0" ] && break; done';
    const cmd = `stty cols 100 rows 30; ctr --address ${rig().address} run -t --rm ${TSBOX.join(' ')} ${IMAGE} ${id} sh -c 'tty; ${wait}; echo size $s'`;
    const out = execFileSync('script', ['-qc', cmd, '/dev/null'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30000 });
    expect(out).toMatch(/\/dev\/pts\/0\r?\r\n/);
    expect(out).toMatch(/size 30 100/);
  });

  it('run -d, exec (with and without -t), ps, TERM to a trapping shell, KILL, rm', async () => {
    const id = uniqueId('life');
    expect((await ctr(['run', '-d', ...TSBOX, IMAGE, id, 'sh', '-c', 'trap "exit 42" TERM; while true; do sleep 0.1; done'])).code).toBe(0);
    expect(await taskStatus(id)).toBe('RUNNING');
    const ex = await ctr(['task', 'exec', '--exec-id', 'e1', id, 'sh', '-c', 'echo beside $(cat /proc/1/comm); exit 5']);
    expect(ex).toMatchObject({ code: 5, stdout: 'beside sh\n' });
    const tty = execFileSync('script', ['-qc', `ctr --address ${rig().address} task exec -t --exec-id e2 ${id} tty`, '/dev/null'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(tty).toMatch(/\/dev\/pts\/\d+/);
    const ps = await ctr(['task', 'ps', id]);
    expect(ps.stdout.split('\n')[0]).toMatch(/^PID\s+INFO/);
    expect(ps.stdout.trim().split('\n').length).toBeGreaterThanOrEqual(2);
    expect((await ctr(['task', 'kill', '-s', 'TERM', id])).code).toBe(0);
    await until(id, 'STOPPED');
    const rm = await ctr(['task', 'rm', id]);
    expect(rm.stderr).toMatch(/exit with non-zero exit code 42/);
    expect((await ctr(['container', 'rm', id])).code).toBe(0);

    const killed = uniqueId('kill');
    await ctr(['run', '-d', ...TSBOX, IMAGE, killed, 'sleep', '60']);
    await ctr(['task', 'kill', '-s', 'KILL', killed]);
    await until(killed, 'STOPPED');
    expect((await ctr(['task', 'rm', killed])).stderr).toMatch(/exit with non-zero exit code 137/);
    await ctr(['container', 'rm', killed]);
  });

  it('reports an exec of a missing program clearly and lets exec ids be reused', async () => {
    const id = uniqueId('exid');
    await ctr(['run', '-d', ...TSBOX, IMAGE, id, 'sleep', '60']);
    try {
      const missing = await ctr(['task', 'exec', '--exec-id', 'x', id, 'no-such-program']);
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).toMatch(/process\.args\[0\]: exec no-such-program: not found in PATH: ENOENT/);
      // ctr deletes each exec when it is done, so the same id is free again every time.
      for (const word of ['one', 'two', 'three']) {
        expect(await ctr(['task', 'exec', '--exec-id', 'x', id, 'echo', word])).toMatchObject({ code: 0, stdout: `${word}\n` });
      }
    } finally {
      await remove(id);
    }
  });

  it('publishes create, start, exit and delete in order', async () => {
    const topics = await taskTopicsOfRun('ev', (id) => ctr(['run', '--rm', ...TSBOX, IMAGE, id, 'true']));
    expect(topics).toEqual(['/tasks/create', '/tasks/start', '/tasks/exit', '/tasks/delete']);
  });

  it('writes both streams to --log-uri file://', async () => {
    const log = path.join(rig().dir, 'logs', `${uniqueId('log')}.log`);
    const r = await run(TSBOX, ['--log-uri', `file://${log}`], ['sh', '-c', 'echo out; echo err >&2']);
    expect(r.code).toBe(0);
    expect(fs.readFileSync(log, 'utf8').split('\n').sort()).toEqual(['', 'err', 'out']);
  });

  it('hands stdout and stderr to a binary:// logger', async () => {
    const base = path.join(rig().dir, 'logs', uniqueId('bin'));
    fs.mkdirSync(path.dirname(base), { recursive: true });
    const logger = path.join(PROJECT_ROOT, 'test', 'tools', 'logger.sh');
    const r = await run(TSBOX, ['--log-uri', `binary://${logger}?out=${base}.out&err=${base}.err`], ['sh', '-c', 'echo to-out; echo to-err >&2']);
    expect(r.code).toBe(0);
    // The logger finishes its copies when the container's end of the pipes closes.
    const read = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '');
    await waitUntil(() => read(`${base}.out`) !== '' && read(`${base}.err`) !== '', 'the logger wrote both files');
    expect([read(`${base}.out`), read(`${base}.err`)]).toEqual(['to-out\n', 'to-err\n']);
  });

  it('starts 12 containers in parallel', async () => {
    const results = await Promise.all(Array.from({ length: 12 }, (_, i) => run(TSBOX, [], ['sh', '-c', `echo ${i}`])));
    for (const r of results) if (r.code !== 0) process.stderr.write(`parallel run failed: ${JSON.stringify(r)}\n`);
    expect(results.map((r) => r.stdout.trim())).toEqual(Array.from({ length: 12 }, (_, i) => String(i)));
    expect(results.every((r) => r.code === 0)).toBe(true);
  });

  it('serves a namespace from one daemon that exits after its last task', async () => {
    const ns = `tsbox-${uniqueId('ns')}`;
    await ctr(['images', 'import', path.join(PROJECT_ROOT, 'build', 'images', 'busybox.tar')], { namespace: ns });
    const daemons = () => shimDaemons(`-namespace ${ns} `);
    const a = uniqueId('a');
    const b = uniqueId('b');
    await ctr(['run', '-d', ...TSBOX, IMAGE, a, 'sleep', '60'], { namespace: ns });
    await ctr(['run', '-d', ...TSBOX, IMAGE, b, 'sleep', '60'], { namespace: ns });
    expect(daemons()).toHaveLength(1);
    for (const id of [a, b]) await remove(id, ns);
    // The daemon leaves once idle_timeout (1 s in the rig) has passed without a new task.
    await waitUntil(() => daemons().length === 0, 'the daemon exits');
    // ctr puts them under /<namespace>/<id>: the shared parent goes with the last of them,
    // although the first one made it.
    expect(cgroupExists(ns)).toBe(false);
    await ctr(['images', 'rm', IMAGE], { namespace: ns });
  });

  it('takes its configuration from ctr --runtime-config-path', async () => {
    const config = path.join(rig().dir, `${uniqueId('cfg')}.toml`);
    fs.writeFileSync(config, `root = "${path.join(rig().dir, 'tsbox')}"\ngrouping = "container"\nidle_timeout = 0\n`);
    const id = uniqueId('own');
    const ref = uniqueId('ref');
    const address = (c: string) => fs.readFileSync(path.join(rig().dir, 'state', 'io.containerd.runtime.v2.task', 'default', c, 'address'), 'utf8');
    expect((await ctr(['run', '-d', ...TSBOX, IMAGE, ref, 'sleep', '60'])).code).toBe(0);
    expect((await ctr(['run', '-d', ...TSBOX, '--runtime-config-path', config, IMAGE, id, 'sleep', '60'])).code).toBe(0);
    expect(address(id)).not.toBe(address(ref));
    // grouping = "container": a daemon of its own, named by this container's id
    const own = () => shimDaemons(`-namespace default -id ${id} `);
    expect(own()).toHaveLength(1);
    for (const c of [id, ref]) await remove(c);
    // idle_timeout = 0: it leaves right after its only task
    await waitUntil(() => own().length === 0, 'its own daemon exits');
  });

  it("keeps logging into containerd's log after the first container of its daemon is gone", async () => {
    const ns = `tsbox-${uniqueId('log')}`;
    await ctr(['images', 'import', path.join(PROJECT_ROOT, 'build', 'images', 'busybox.tar')], { namespace: ns });
    const [first, second] = [uniqueId('first'), uniqueId('second')];
    await ctr(['run', '-d', ...TSBOX, IMAGE, first, 'sleep', '60'], { namespace: ns });
    await ctr(['run', '-d', ...TSBOX, IMAGE, second, 'sleep', '60'], { namespace: ns });
    await ctr(['task', 'kill', '-s', 'KILL', first], { namespace: ns });
    await waitUntil(async () => (await taskStatus(first, ns)) === 'STOPPED', `${first} stopped`);
    await ctr(['task', 'rm', first], { namespace: ns });
    // Make the daemon log while only `second` is served: its sandbox dies under it.
    const init = await taskPid(second, ns);
    const stat = fs.readFileSync(`/proc/${init}/stat`, 'utf8');
    const sandbox = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    process.kill(sandbox, 'SIGKILL');
    const log = path.join(rig().dir, 'log', 'containerd.log');
    const wanted = new RegExp(`"id":"${second}","msg":"lost the connection to tsbox-sandbox"`);
    await waitUntil(() => wanted.test(fs.readFileSync(log, 'utf8')), "the warning in containerd's log");
    // Without its sandbox nothing could reap or signal it: the shim kills it and says so.
    await waitUntil(async () => (await taskStatus(second, ns)) === 'STOPPED', `${second} stopped`);
    expect(alive(init)).toBe(false);
    // And it is still cleaned up completely.
    expect((await ctr(['task', 'rm', '-f', second], { namespace: ns })).code).toBe(0);
    expect(alive(init)).toBe(false);
    for (const id of [first, second]) await ctr(['container', 'rm', id], { namespace: ns });
    await ctr(['images', 'rm', IMAGE], { namespace: ns });
  });

  it('keeps a container running across a containerd restart; exec and kill still work', async () => {
    const id = uniqueId('restart');
    await ctr(['run', '-d', ...TSBOX, IMAGE, id, 'sleep', '60']);
    execFileSync(CONTAINERD_SCRIPT, ['restart', rig().dir]);
    expect(await taskStatus(id)).toBe('RUNNING');
    expect(await ctr(['task', 'exec', '--exec-id', 'after', id, 'echo', 'still here'])).toMatchObject({ code: 0, stdout: 'still here\n' });
    await ctr(['task', 'kill', '-s', 'KILL', id]);
    await until(id, 'STOPPED');
    expect((await ctr(['task', 'rm', id])).code).toBe(0);
    await ctr(['container', 'rm', id]);
  });

  it('cleans up through `delete` when the shim daemon is killed', async () => {
    const id = uniqueId('orphan');
    await ctr(['run', '-d', ...TSBOX, '--memory-limit', String(64 << 20), IMAGE, id, 'sleep', '60']);
    const bundle = path.join(rig().dir, 'state', 'io.containerd.runtime.v2.task', 'default', id);
    const address = fs.readFileSync(path.join(bundle, 'address'), 'utf8').replace('unix://', '');
    const daemon = shimDaemons(`-namespace default -id .* -socket ${address}`).map(Number);
    const initPid = await taskPid(id);
    expect(alive(initPid)).toBe(true);
    for (const pid of daemon) process.kill(pid, 'SIGKILL');
    // containerd notices the dead connection, runs `delete` (which kills the container and
    // unmounts its rootfs last), and forgets the task; the task may leave `ctr task ls`
    // before `delete` is done, so the wait is for delete's last step.
    const mounted = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(`${id}/rootfs`);
    await waitUntil(async () => (await taskStatus(id)) === undefined && !alive(initPid) && !mounted(), 'containerd forgets the task and delete cleans up');
    expect(await taskStatus(id)).toBeUndefined();
    expect(alive(initPid)).toBe(false);
    expect(cgroupExists(`default/${id}`)).toBe(false);
    expect(fs.existsSync(path.join(rig().dir, 'tsbox', 'default', id))).toBe(false);
    await ctr(['container', 'rm', id]);
  });

  it('says clearly what is wrong with a bad mount and leaves nothing', async () => {
    const id = uniqueId('bad');
    const r = await ctr(['run', '--rm', ...TSBOX, '--mount', 'type=bind,src=/nonexistent/dir,dst=/data,options=rbind', IMAGE, id, 'true']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/mounts\[\d+\] \(\/data\): bind source \/nonexistent\/dir: ENOENT/);
    expect(fs.existsSync(path.join(rig().dir, 'tsbox', 'default', id))).toBe(false);
    await ctr(['container', 'rm', id]);
  });
});
