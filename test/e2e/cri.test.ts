/**
 * Kubernetes' view: pods driven through CRI (runtime.v1 over gRPC, the calls kubelet makes)
 * against the rig's containerd, runtime handler `tsbox`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroupExists, cpuQuota, memoryCgroupOf, memoryLimit } from '../cgroupfs';
import { Cri, Message } from '../rig/cri';
import { alive, ctr, rig, shimDaemons, uniqueId, waitUntil } from '../rig/rig';

const IMAGE = 'localhost/busybox:latest';
let cri: Cri;
const pods: string[] = [];

beforeAll(() => {
  cri = new Cri();
});

afterAll(async () => {
  for (const id of pods) {
    await cri.call('StopPodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
    await cri.call('RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
  }
  cri.close();
});

interface Pod {
  id: string;
  config: Message;
  uid: string;
  logDir: string;
}

async function runPod(opts: { hostNetwork?: boolean; sharePid?: boolean; handler?: string; cgroupParent?: string; extra?: Message } = {}): Promise<Pod> {
  const uid = uniqueId('uid');
  const logDir = path.join(rig().dir, 'pod-logs', uid);
  fs.mkdirSync(logDir, { recursive: true });
  const config = {
    metadata: { name: uniqueId('pod'), uid, namespace: 'tsbox-test', attempt: 0 },
    // kubelet gives a host-network pod no hostname (runc and tsbox refuse one there)
    ...(opts.hostNetwork ? {} : { hostname: uid }),
    log_directory: logDir,
    linux: {
      cgroup_parent: opts.cgroupParent ?? `/kubepods/pod${uid}`,
      security_context: { namespace_options: { network: opts.hostNetwork ? 'NODE' : 'POD', pid: opts.sharePid ? 'POD' : 'CONTAINER', ipc: 'POD' } },
    },
    ...opts.extra,
  };
  const r = await cri.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config, runtime_handler: opts.handler ?? 'tsbox' });
  pods.push(r.pod_sandbox_id);
  return { id: r.pod_sandbox_id, config, uid, logDir };
}

async function startContainer(pod: Pod, name: string, command: string[], extra: Message = {}): Promise<string> {
  const c = await cri.call<{ container_id: string }>('CreateContainer', {
    pod_sandbox_id: pod.id,
    config: { metadata: { name }, image: { image: IMAGE }, command, log_path: `${name}.log`, linux: {}, ...extra },
    sandbox_config: pod.config,
  });
  await cri.call('StartContainer', { container_id: c.container_id });
  return c.container_id;
}

interface Status {
  state: string;
  exit_code: number;
  reason: string;
}

async function status(id: string): Promise<Status> {
  return (await cri.call<{ status: Status }>('ContainerStatus', { container_id: id })).status;
}

async function exited(id: string): Promise<Status> {
  for (let i = 0; i < 5000; i++) {
    const s = await status(id);
    if (s.state === 'CONTAINER_EXITED') return s;
  }
  throw new Error(`container ${id} never exited`);
}

async function execSync(id: string, cmd: string[], timeout = 10): Promise<{ stdout: string; stderr: string; exit_code: number }> {
  const r = await cri.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>('ExecSync', { container_id: id, cmd, timeout });
  return { stdout: Buffer.from(r.stdout).toString(), stderr: Buffer.from(r.stderr).toString(), exit_code: r.exit_code };
}

/** The init's pid from a verbose ContainerStatus's info.info JSON (NaN when absent). */
function infoPid(info: Record<string, string>): number {
  return Number((JSON.parse(info.info ?? '{}') as { pid?: unknown }).pid);
}

async function removePod(pod: Pod): Promise<void> {
  await cri.call('StopPodSandbox', { pod_sandbox_id: pod.id });
  await cri.call('RemovePodSandbox', { pod_sandbox_id: pod.id });
  pods.splice(pods.indexOf(pod.id), 1);
}

describe('pods on tsbox through CRI', () => {
  it("reports tsbox's handler features as containerd 2 learns them from -info", async () => {
    type Handler = { name: string; features: { recursive_read_only_mounts: boolean; user_namespaces: boolean } | null };
    const status = await cri.call<{ runtime_handlers: Handler[] }>('Status', { verbose: false });
    const handlers = new Map(status.runtime_handlers.map((h) => [h.name, h.features]));
    const version = await cri.call<{ runtime_version: string }>('Version', { version: 'v1' });
    if (version.runtime_version.startsWith('1.')) {
      // containerd 1.6 reports no handlers (it never asks a runtime what it supports).
      expect(handlers.size).toBe(0);
      return;
    }
    // Recursive read-only mounts, as runc; no user namespaces (no idmapped mounts yet).
    expect(handlers.get('tsbox')).toEqual({ recursive_read_only_mounts: true, user_namespaces: false });
    expect(handlers.get('tsbox-pod')).toEqual(handlers.get('tsbox'));
    expect(handlers.get('runc')?.recursive_read_only_mounts).toBe(true);
  });

  it('runs a pod on a CNI bridge, and two pods reach each other by IP on it', async () => {
    const a = await runPod();
    const b = await runPod();
    const ip = async (p: Pod) => (await cri.call<{ status: { network: { ip: string } } }>('PodSandboxStatus', { pod_sandbox_id: p.id })).status.network.ip;
    const ipA = await ip(a);
    expect(ipA).toMatch(/^10\.99\.\d+\.\d+$/);
    expect(await ip(b)).not.toBe(ipA);
    const server = await startContainer(a, 'web', [
      'sh',
      '-c',
      'mkdir -p /tmp/www && echo hello-from-a > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www',
    ]);
    const client = await startContainer(b, 'client', ['sleep', '60']);
    let got = '';
    for (let i = 0; i < 50 && got !== 'hello-from-a\n'; i++) got = (await execSync(client, ['wget', '-qO-', `http://${ipA}:8080/index.html`])).stdout;
    expect(got).toBe('hello-from-a\n');
    expect((await execSync(server, ['sh', '-c', 'ip -o -4 addr show eth0 | grep -o "inet [0-9.]*"'])).stdout.trim()).toBe(`inet ${ipA}`);
    await removePod(a);
    await removePod(b);
  });

  it.each(['tsbox', 'runc'])('runs a host-network pod (%s)', async (handler) => {
    const p = await runPod({ hostNetwork: true, handler });
    const c = await startContainer(p, 'net', ['sh', '-c', 'ls /sys/class/net | sort']);
    expect((await exited(c)).exit_code).toBe(0);
    const log = fs.readFileSync(path.join(p.logDir, 'net.log'), 'utf8');
    for (const link of fs.readdirSync('/sys/class/net')) expect(log).toContain(` ${link}\n`);
    await removePod(p);
  });

  it("shares hostname, network and ipc between a pod's containers, and pids with pod pid sharing", async () => {
    const p = await runPod({ sharePid: true });
    const one = await startContainer(p, 'one', ['sleep', '60']);
    const two = await startContainer(p, 'two', ['sleep', '61']);
    const ns = async (id: string) =>
      (await execSync(id, ['sh', '-c', 'hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; readlink /proc/self/ns/uts'])).stdout;
    expect(await ns(one)).toBe(await ns(two));
    expect((await ns(one)).split('\n')[0]).toBe(p.uid);
    const ps = (await execSync(one, ['ps', '-o', 'args'])).stdout;
    expect(ps).toContain('sleep 61');
    expect(ps).toContain('/pause');
    await removePod(p);
  });

  it('reports exit codes and reasons: 0 Completed, 7 Error, OOM 137 OOMKilled', async () => {
    const p = await runPod();
    const ok = await startContainer(p, 'ok', ['true']);
    const bad = await startContainer(p, 'bad', ['sh', '-c', 'exit 7']);
    const oom = await startContainer(p, 'oom', ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'], {
      linux: { resources: { memory_limit_in_bytes: 16 << 20 } },
    });
    expect(await exited(ok)).toMatchObject({ exit_code: 0, reason: 'Completed' });
    expect(await exited(bad)).toMatchObject({ exit_code: 7, reason: 'Error' });
    expect(await exited(oom)).toMatchObject({ exit_code: 137, reason: 'OOMKilled' });
    await removePod(p);
  });

  it('gives stats for a busy container and applies UpdateContainerResources to its cgroup', async () => {
    const p = await runPod();
    const c = await startContainer(p, 'busy', ['sh', '-c', 'while :; do :; done'], {
      linux: { resources: { memory_limit_in_bytes: 64 << 20, cpu_shares: 512 } },
    });
    let cpu = 0;
    for (let i = 0; i < 5000 && cpu === 0; i++) {
      const s = await cri.call<{ stats: { cpu: { usage_core_nano_seconds: { value: number } }; memory: { working_set_bytes: { value: number } } } }>(
        'ContainerStats',
        { container_id: c },
      );
      cpu = s.stats.cpu?.usage_core_nano_seconds?.value ?? 0;
      if (cpu > 0) expect(s.stats.memory.working_set_bytes.value).toBeGreaterThan(0);
    }
    expect(cpu).toBeGreaterThan(0);
    await cri.call('UpdateContainerResources', {
      container_id: c,
      linux: { memory_limit_in_bytes: 96 << 20, cpu_shares: 256, cpu_period: 100000, cpu_quota: 50000 },
    });
    expect(memoryLimit(`kubepods/pod${p.uid}/${c}`)).toBe(String(96 << 20));
    expect(cpuQuota(`kubepods/pod${p.uid}/${c}`)).toBe('50000');
    await removePod(p);
  });

  it('stops a TERM-trapping container within its grace period with its own exit code', async () => {
    const p = await runPod();
    const c = await startContainer(p, 'trap', ['sh', '-c', 'trap "exit 42" TERM; while :; do sleep 0.1; done']);
    await cri.call('StopContainer', { container_id: c, timeout: 10 });
    expect(await exited(c)).toMatchObject({ exit_code: 42, reason: 'Error' });
    await removePod(p);
  });

  it('sends SIGKILL after the grace period to a container that ignores the stop signal', async () => {
    const p = await runPod();
    const c = await startContainer(p, 'stubborn', ['sh', '-c', 'trap "" TERM; while :; do sleep 0.1; done']);
    await cri.call('StopContainer', { container_id: c, timeout: 1 });
    expect(await exited(c)).toMatchObject({ exit_code: 137, reason: 'Error' });
    await removePod(p);
  });

  it('binds /dev/termination-log and places containers under a systemd-style cgroup parent', async () => {
    const p = await runPod({ cgroupParent: `kubepods-pod${uniqueId('s').replace('-', '_')}.slice` });
    const term = path.join(p.logDir, 'termination-log');
    fs.writeFileSync(term, '');
    const c = await startContainer(p, 'term', ['sh', '-c', 'echo goodbye > /dev/termination-log; exec sleep 60'], {
      mounts: [{ container_path: '/dev/termination-log', host_path: term }],
    });
    await waitUntil(() => fs.readFileSync(term, 'utf8') === 'goodbye\n', 'the container writes its termination log');
    // Read from the host: on v2, CRI gives the container a cgroup namespace, so inside
    // its cgroup is `/`.
    const info = (await cri.call<{ info: Record<string, string> }>('ContainerStatus', { container_id: c, verbose: true })).info;
    const pid = infoPid(info);
    const slice = (p.config.linux as { cgroup_parent: string }).cgroup_parent;
    expect(memoryCgroupOf(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8'))).toBe(`/kubepods.slice/${slice}/cri-containerd-${c}.scope`);
    await removePod(p);
  });

  it('serves each pod from its own daemon with pod grouping, until the pod is removed', async () => {
    const daemons = () => shimDaemons('-namespace k8s.io');
    // Daemons of earlier tests may still be leaving (idle_timeout): count only new ones.
    const before = new Set(daemons());
    const a = await runPod({ handler: 'tsbox-pod' });
    const b = await runPod({ handler: 'tsbox-pod' });
    await startContainer(a, 'x', ['sleep', '60']);
    await startContainer(a, 'y', ['sleep', '60']);
    await startContainer(b, 'x', ['sleep', '60']);
    const mine = daemons().filter((pid) => !before.has(pid));
    expect(mine.length).toBe(2);
    await removePod(a);
    // It leaves once idle_timeout (1 s in the rig) has passed.
    const alive = () => daemons().filter((pid) => mine.includes(pid));
    await waitUntil(() => alive().length === 1, "the removed pod's daemon exits");
    expect(alive().length).toBe(1);
    await removePod(b);
  });

  it('runs ExecSync with large output and kills an exec at its timeout', async () => {
    const p = await runPod();
    const c = await startContainer(p, 'exec', ['sleep', '60']);
    const big = await execSync(c, ['sh', '-c', 'head -c 3000000 /dev/zero | tr "\\0" x']);
    expect(big.stdout.length).toBe(3000000);
    const started = Date.now();
    const slow = await execSync(c, ['sleep', '30'], 1).then(
      () => new Error('ExecSync returned'),
      (e: Error) => e,
    );
    expect(Date.now() - started).toBeLessThan(15000);
    expect(String(slow)).toMatch(/timeout|deadline/i);
    await removePod(p);
  });

  it('runs a read-only rootfs as user 1000 and writes CRI-format logs', async () => {
    const p = await runPod();
    const c = await startContainer(p, 'ro', ['sh', '-c', 'id -u; touch /x 2>&1; echo to-stderr >&2'], {
      linux: { security_context: { run_as_user: { value: 1000 }, readonly_rootfs: true } },
    });
    expect((await exited(c)).exit_code).toBe(0);
    const lines = fs.readFileSync(path.join(p.logDir, 'ro.log'), 'utf8').trim().split('\n');
    // <RFC3339Nano time> <stream> <F|P> <content>
    const parsed = lines.map((l) => /^\S+ (stdout|stderr) F (.*)$/.exec(l)?.slice(1));
    expect(parsed).toContainEqual(['stdout', '1000']);
    expect(parsed).toContainEqual(['stdout', 'touch: /x: Read-only file system']);
    expect(parsed).toContainEqual(['stderr', 'to-stderr']);
    await removePod(p);
  });

  it('creates 5 pods in parallel', async () => {
    const five = await Promise.all(Array.from({ length: 5 }, () => runPod()));
    const cs = await Promise.all(five.map((p, i) => startContainer(p, 'n', ['sh', '-c', `exit ${i}`])));
    expect((await Promise.all(cs.map(exited))).map((s) => s.exit_code)).toEqual([0, 1, 2, 3, 4]);
    await Promise.all(five.map(removePod));
  });

  it('leaves no process, mount, cgroup, netns or state of a removed pod', async () => {
    const netnsBefore = fs.existsSync('/var/run/netns') ? fs.readdirSync('/var/run/netns') : [];
    const p = await runPod();
    const c = await startContainer(p, 'gone', ['sleep', '60']);
    const pidOf = (await cri.call<{ info: Record<string, string> }>('ContainerStatus', { container_id: c, verbose: true })).info;
    const pid = infoPid(pidOf);
    expect(pid).toBeGreaterThan(0);
    await removePod(p);
    expect(alive(pid)).toBe(false);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(p.id);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(c);
    expect(cgroupExists(`kubepods/pod${p.uid}/${c}`)).toBe(false);
    expect(fs.existsSync(path.join(rig().dir, 'tsbox', 'k8s.io', c))).toBe(false);
    expect(fs.existsSync(path.join(rig().dir, 'tsbox', 'k8s.io', p.id))).toBe(false);
    expect(fs.existsSync('/var/run/netns') ? fs.readdirSync('/var/run/netns') : []).toEqual(netnsBefore);
  });
});

describe('the policy hook through CRI (handler tsbox-policy)', () => {
  it("refuses a container with the policy's reason and runs the pod's others", async () => {
    // Sees the pod's sandbox container too (allowed), and CRI's annotations and image.
    fs.writeFileSync(
      path.join(rig().dir, 'policy.js'),
      `module.exports = (r) => r.kind === 'container' && r.annotations['io.kubernetes.cri.container-name'] === 'forbidden' ? { deny: 'no forbidden containers from ' + r.image } : undefined;\n`,
    );
    const pod = await runPod({ handler: 'tsbox-policy' });
    // CRI makes the task (the shim's Create) at StartContainer: that is where it is refused.
    const denied = await startContainer(pod, 'forbidden', ['true']).then(
      () => null,
      (e: Error) => e.message,
    );
    expect(denied).toContain(`policy ${path.join(rig().dir, 'policy.js')} denied container `);
    expect(denied).toContain(`: no forbidden containers from ${IMAGE}`);
    const ok = await startContainer(pod, 'allowed', ['sh', '-c', 'exit 4']);
    expect((await exited(ok)).exit_code).toBe(4);
    await removePod(pod);
  });
});

describe('pods on the shim sandboxer (handler tsbox-shim: containerd 2 sandbox API)', () => {
  const containerd2 = async () => !(await cri.call<{ runtime_version: string }>('Version', { version: 'v1' })).runtime_version.startsWith('1.');
  const containersOf = async () => (await ctr(['containers', 'ls', '-q'], { namespace: 'k8s.io' })).stdout.split('\n');

  it('runs a pod without a pause container; its containers share its namespaces and files', async () => {
    // containerd 1.6 has no sandbox API: there the handler runs the same pod with a pause
    // container, and the containers must see the same things.
    const v2 = await containerd2();
    const dns = { servers: ['10.99.0.53'], searches: ['tsbox.example'], options: ['ndots:3'] };
    const p = await runPod({
      handler: 'tsbox-shim',
      sharePid: true,
      extra: {
        dns_config: dns,
        linux: {
          cgroup_parent: '',
          sysctls: { 'net.ipv4.ip_unprivileged_port_start': '80', 'kernel.shmmni': '1234' },
          security_context: { namespace_options: { network: 'POD', pid: 'POD', ipc: 'POD' } },
        },
      },
    });
    expect((await containersOf()).includes(p.id)).toBe(!v2);
    const sandbox = (
      await cri.call<{ status: { state: string; network: { ip: string } }; info: Record<string, string> }>('PodSandboxStatus', {
        pod_sandbox_id: p.id,
        verbose: true,
      })
    ).status;
    expect(sandbox.state).toBe('SANDBOX_READY');
    const a = await startContainer(p, 'a', ['sh', '-c', 'echo shared > /dev/shm/note; exec sleep 60']);
    const b = await startContainer(p, 'b', ['sleep', '60']);
    const run = async (id: string, cmd: string) => (await execSync(id, ['sh', '-c', cmd])).stdout;
    for (const id of [a, b]) {
      expect(await run(id, 'hostname')).toBe(`${p.uid}\n`);
      expect(await run(id, 'cat /etc/hostname')).toBe(`${p.uid}\n`);
      expect(await run(id, 'cat /etc/resolv.conf')).toBe('search tsbox.example\nnameserver 10.99.0.53\noptions ndots:3\n');
      expect(await run(id, 'cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/shmmni')).toBe('80\n1234\n');
      expect(await run(id, "ip -o -4 addr show eth0 | grep -o 'inet [0-9.]*'")).toBe(`inet ${sandbox.network.ip}\n`);
      // One pid namespace, whose init is the pod's sandbox.
      expect(await run(id, "tr -d '\\0' < /proc/1/cmdline")).toBe('/pause');
    }
    await waitUntil(async () => (await run(b, 'cat /dev/shm/note 2>/dev/null')) === 'shared\n', "a's note in the pod's /dev/shm");
    expect(await run(b, "ps -o args | grep -c '^sleep 60'")).toBe('2\n');
    if (v2) {
      // The pod's init is tsbox's own, forked from tsbox-sandbox: not dumpable, so nothing
      // in the pod can look into it, and it shows no host path.
      expect((await execSync(b, ['ls', '/proc/1/root/'])).exit_code).not.toBe(0);
      expect((await execSync(b, ['readlink', '/proc/1/fd/0'])).exit_code).not.toBe(0);
      expect((await execSync(b, ['cat', '/proc/1/environ'])).exit_code).not.toBe(0);
      expect(await run(b, 'cat /proc/1/comm')).toBe('pause\n');
    }
    // Stopped, the sandbox is NOTREADY and its containers are gone with its pid namespace.
    await cri.call('StopPodSandbox', { pod_sandbox_id: p.id });
    expect((await cri.call<{ status: { state: string } }>('PodSandboxStatus', { pod_sandbox_id: p.id })).status.state).toBe('SANDBOX_NOTREADY');
    expect((await status(a)).state).toBe('CONTAINER_EXITED');
    await cri.call('RemovePodSandbox', { pod_sandbox_id: p.id });
    pods.splice(pods.indexOf(p.id), 1);
    const mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    expect(mountinfo).not.toContain(p.id);
    for (const id of [p.id, a, b]) expect(fs.existsSync(path.join(rig().dir, 'tsbox', 'k8s.io', id))).toBe(false);
    expect(await containersOf()).not.toContain(p.id);
  });

  it("is cleaned up by containerd's delete when its shim daemon dies", async () => {
    const v2 = await containerd2();
    const p = await runPod({ handler: 'tsbox-shim' });
    const c = await startContainer(p, 'c', ['sleep', '60']);
    const info = (await cri.call<{ info: Record<string, string> }>('PodSandboxStatus', { pod_sandbox_id: p.id, verbose: true })).info;
    // The sandbox's init (tsbox's own on 2.x, the pause container's on 1.6), its
    // tsbox-sandbox, and the shim daemon above that.
    const init = v2 ? Number(info.pid) : infoPid(info);
    const parent = (pid: number) => Number(/^PPid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    const sandbox = parent(init);
    const daemon = parent(sandbox);
    expect(fs.readFileSync(`/proc/${daemon}/cmdline`, 'utf8')).toContain('shim.js');
    process.kill(daemon, 'SIGKILL');
    await waitUntil(() => !alive(init) && !alive(sandbox), "containerd's delete ends the pod's processes");
    await waitUntil(() => !fs.existsSync(path.join(rig().dir, 'tsbox', 'k8s.io', p.id)), "containerd's delete removes the pod's state");
    // What the shim mounted: the pause container's rootfs (1.6), the pod's /dev/shm (2.x).
    const ours = () =>
      fs
        .readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => l.includes(`${p.id}/rootfs `) || l.includes(`${p.id}/pod/shm `));
    await waitUntil(() => ours().length === 0, "containerd's delete unmounts what the shim mounted");
    // containerd reports the container's end to CRI, so the pod can be removed.
    await waitUntil(async () => (await status(c)).state === 'CONTAINER_EXITED', 'CRI sees the container exited');
    await removePod(p);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(p.id);
  });

  it('fails RunPodSandbox with the failing field and leaves nothing of the pod', async () => {
    const states = () => (fs.existsSync(path.join(rig().dir, 'tsbox', 'k8s.io')) ? fs.readdirSync(path.join(rig().dir, 'tsbox', 'k8s.io')).sort() : []);
    const before = states();
    const sandboxMounts = () =>
      fs
        .readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => l.includes('/pod/shm '))
        .sort();
    const mountsBefore = sandboxMounts();
    const err = await runPod({ handler: 'tsbox-shim', extra: { linux: { sysctls: { 'kernel.shm max': '1' } } } }).then(
      () => '',
      (e: Error) => e.message,
    );
    expect(err).toContain('linux.sysctl[kernel.shm max]');
    expect(states()).toEqual(before);
    expect(sandboxMounts()).toEqual(mountsBefore);
  });
});
