import { PodConfig, podFileContents, podSandboxSpec, withPodFiles } from '../../src/oci/pod';
import type { Spec } from '../../src/oci/spec';

const NODE = 2;
const POD = 0;
const CONTAINER = 1;

function nsOf(spec: Spec): Record<string, string> {
  return Object.fromEntries((spec.linux?.namespaces ?? []).map((n) => [n.type, n.path ?? 'new']));
}

describe("a pod sandbox's spec", () => {
  it('holds new uts, ipc and pid namespaces and the netns CRI made, with nothing to run and no capabilities', () => {
    const config: PodConfig = {
      hostname: 'web-0',
      metadata: { name: 'web', namespace: 'ns', uid: 'u1' },
      linux: { cgroupParent: '/kubepods/podu1', sysctls: { 'net.ipv4.ip_forward': '1' } },
    };
    const spec = podSandboxSpec('p1', config, '/run/netns/cni-1');
    expect(nsOf(spec)).toEqual({ mount: 'new', network: '/run/netns/cni-1', uts: 'new', ipc: 'new', pid: 'new' });
    expect(spec.hostname).toBe('web-0');
    expect(spec.linux?.cgroupsPath).toBe('/kubepods/podu1/p1');
    expect(spec.linux?.sysctl).toEqual({ 'net.ipv4.ip_forward': '1' });
    expect(spec.process?.capabilities?.bounding).toEqual([]);
    expect(spec.process?.noNewPrivileges).toBe(true);
    expect(spec.root).toEqual({ path: 'rootfs', readonly: true });
    expect(spec.annotations).toMatchObject({
      'io.kubernetes.cri.container-type': 'sandbox',
      'io.kubernetes.cri.sandbox-id': 'p1',
      'io.kubernetes.cri.sandbox-name': 'web',
      'io.containerd.tsbox.pod-sandbox': 'true',
    });
  });

  it("shares the host's network (and its hostname), ipc and pid namespaces when the pod asks", () => {
    const spec = podSandboxSpec('p1', { hostname: 'ignored', linux: { securityContext: { namespaceOptions: { network: NODE, ipc: NODE, pid: NODE } } } }, '');
    expect(nsOf(spec)).toEqual({ mount: 'new' });
    expect(spec.hostname).toBeUndefined();
  });

  it('makes a network namespace of its own when CRI gives none, and a pid one for per-container pid pods', () => {
    expect(nsOf(podSandboxSpec('p1', { linux: { securityContext: { namespaceOptions: { pid: CONTAINER } } } }, ''))).toEqual({
      mount: 'new',
      network: 'new',
      uts: 'new',
      ipc: 'new',
      pid: 'new',
    });
  });

  it("maps the pod's user namespace when it has one", () => {
    const userns = { mode: POD, uids: [{ hostId: 100000, containerId: 0, length: 65536 }], gids: [{ hostId: 200000, containerId: 0, length: 65536 }] };
    const spec = podSandboxSpec('p1', { linux: { securityContext: { namespaceOptions: { usernsOptions: userns } } } }, '/run/netns/x');
    expect(nsOf(spec).user).toBe('new');
    expect(spec.linux?.uidMappings).toEqual([{ hostID: 100000, containerID: 0, size: 65536 }]);
    expect(spec.linux?.gidMappings).toEqual([{ hostID: 200000, containerID: 0, size: 65536 }]);
    expect(nsOf(podSandboxSpec('p1', { linux: { securityContext: { namespaceOptions: { usernsOptions: { mode: NODE } } } } }, '')).user).toBeUndefined();
  });

  it('leaves the cgroup to the engine without a parent', () => {
    expect(podSandboxSpec('p1', null, '').linux?.cgroupsPath).toBeUndefined();
  });
});

describe("a pod's shared files", () => {
  const host = { hostname: 'node1', hosts: '127.0.0.1 localhost\n', resolvConf: 'nameserver 192.0.2.1\n' };

  it("writes the pod's DNS config as resolv.conf, and its hostname", () => {
    const files = podFileContents(
      { hostname: 'web-0', dnsConfig: { servers: ['10.0.0.10', '10.0.0.11'], searches: ['a.svc', 'svc'], options: ['ndots:5'] } },
      host,
    );
    expect(files).toEqual({
      hostname: 'web-0\n',
      hosts: host.hosts,
      resolvConf: 'search a.svc svc\nnameserver 10.0.0.10\nnameserver 10.0.0.11\noptions ndots:5\n',
    });
  });

  it("takes the host's resolv.conf and hostname when the pod gives none", () => {
    expect(podFileContents(null, host)).toEqual({ hostname: 'node1\n', hosts: host.hosts, resolvConf: host.resolvConf });
  });
});

describe("a pod's container", () => {
  const base: Spec = {
    ociVersion: '1.0.2',
    root: { path: 'rootfs' },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    ],
  };

  it("gets the pod's files, its /dev/shm in place of containerd's private one", () => {
    const spec = withPodFiles(base, '/b/pod', () => true);
    expect(spec.mounts?.map((m) => [m.destination, m.source, m.options?.at(-1)])).toEqual([
      ['/proc', 'proc', undefined],
      ['/etc/hostname', '/b/pod/hostname', 'rw'],
      ['/etc/hosts', '/b/pod/hosts', 'rw'],
      ['/etc/resolv.conf', '/b/pod/resolv.conf', 'rw'],
      ['/dev/shm', '/b/pod/shm', 'rw'],
    ]);
  });

  it("keeps the request's own mounts there, and reads the files read-only with a read-only root", () => {
    const own: Spec = {
      ...base,
      root: { path: 'rootfs', readonly: true },
      mounts: [
        { destination: '/etc/hosts', type: 'bind', source: '/mine' },
        { destination: '/dev/shm', type: 'bind', source: '/shm' },
      ],
    };
    const spec = withPodFiles(own, '/b/pod', () => true);
    expect(spec.mounts?.find((m) => m.destination === '/etc/hosts')?.source).toBe('/mine');
    expect(spec.mounts?.find((m) => m.destination === '/dev/shm')?.source).toBe('/shm');
    expect(spec.mounts?.find((m) => m.destination === '/etc/resolv.conf')?.options).toContain('ro');
  });

  it('keeps its private /dev/shm when the pod has none (host IPC), and is unchanged with nothing to add', () => {
    const spec = withPodFiles(base, '/b/pod', (name) => name !== 'shm');
    expect(spec.mounts?.find((m) => m.destination === '/dev/shm')?.type).toBe('tmpfs');
    expect(withPodFiles(base, '/b/pod', () => false)).toBe(base);
  });
});
