/**
 * A pod sandbox without a pause container (containerd 2's sandbox API, sandboxer "shim"):
 * the spec of the process that holds the pod's namespaces, the files every container of
 * the pod shares (hostname, hosts, resolv.conf, /dev/shm) and the mounts that give them to
 * a container. Pure: the shim (src/shim/sandbox-service.ts) writes and mounts what this
 * decides. The choices follow what CRI's pause-container flow gives a pod, so a container
 * sees the same thing under either sandboxer.
 */
import * as path from 'node:path';
import type { Mount, Namespace, Spec } from './spec';

/** CRI's PodSandboxConfig, as far as a sandbox is built from it (proto/k8s/cri/pod.proto). */
export interface PodConfig {
  metadata?: { name?: string | null; uid?: string | null; namespace?: string | null } | null;
  hostname?: string | null;
  logDirectory?: string | null;
  dnsConfig?: { servers?: string[] | null; searches?: string[] | null; options?: string[] | null } | null;
  annotations?: Record<string, string> | null;
  linux?: {
    cgroupParent?: string | null;
    sysctls?: Record<string, string> | null;
    securityContext?: {
      namespaceOptions?: {
        network?: number | null;
        pid?: number | null;
        ipc?: number | null;
        usernsOptions?: {
          mode?: number | null;
          uids?: { hostId?: number | null; containerId?: number | null; length?: number | null }[] | null;
          gids?: { hostId?: number | null; containerId?: number | null; length?: number | null }[] | null;
        } | null;
      } | null;
    } | null;
  } | null;
}

/** CRI's NamespaceMode. */
const POD = 0;
const NODE = 2;

/** Marks a pod sandbox's record, so that a container naming it as its sandbox joins it. */
export const POD_SANDBOX_ANNOTATION = 'io.containerd.tsbox.pod-sandbox';
/** Where CRI names a container's pod (on the pod sandbox itself too). */
export const SANDBOX_ID_ANNOTATION = 'io.kubernetes.cri.sandbox-id';

/** The files a pod's containers share, by name in the pod directory. */
export const POD_FILES = { hostname: 'hostname', hosts: 'hosts', resolvConf: 'resolv.conf', shm: 'shm' } as const;

function nsOptions(config: PodConfig | null) {
  return config?.linux?.securityContext?.namespaceOptions ?? null;
}

export function hostNetwork(config: PodConfig | null): boolean {
  return (nsOptions(config)?.network ?? POD) === NODE;
}

export function hostIpc(config: PodConfig | null): boolean {
  return (nsOptions(config)?.ipc ?? POD) === NODE;
}

/**
 * The spec of a pod's sandbox: an empty read-only root with /proc, no capabilities, and the
 * namespaces CRI gives a pause container (network at `netnsPath` when CRI made one, new
 * ipc, uts and pid unless the pod shares the host's, a user namespace when the pod asks
 * for one). `root.path` is `rootfs` in the bundle, an empty directory the caller makes.
 */
export function podSandboxSpec(id: string, config: PodConfig | null, netnsPath: string): Spec {
  const ns = nsOptions(config);
  const namespaces: Namespace[] = [{ type: 'mount' }];
  if (!hostNetwork(config)) {
    namespaces.push(netnsPath ? { type: 'network', path: netnsPath } : { type: 'network' });
    namespaces.push({ type: 'uts' });
  }
  if (!hostIpc(config)) namespaces.push({ type: 'ipc' });
  if ((ns?.pid ?? POD) !== NODE) namespaces.push({ type: 'pid' });
  const userns = ns?.usernsOptions;
  const mapping = (m: { hostId?: number | null; containerId?: number | null; length?: number | null }) => ({
    hostID: m.hostId ?? 0,
    containerID: m.containerId ?? 0,
    size: m.length ?? 0,
  });
  const withUserns = userns?.mode === POD;
  if (withUserns) namespaces.push({ type: 'user' });
  const meta = config?.metadata;
  const annotations: Record<string, string> = {
    ...(config?.annotations ?? {}),
    'io.kubernetes.cri.container-type': 'sandbox',
    [SANDBOX_ID_ANNOTATION]: id,
    'io.kubernetes.cri.sandbox-name': meta?.name ?? '',
    'io.kubernetes.cri.sandbox-namespace': meta?.namespace ?? '',
    'io.kubernetes.cri.sandbox-uid': meta?.uid ?? '',
    'io.kubernetes.cri.sandbox-log-directory': config?.logDirectory ?? '',
    [POD_SANDBOX_ANNOTATION]: 'true',
  };
  const parent = config?.linux?.cgroupParent;
  return {
    ociVersion: '1.0.2',
    process: {
      user: { uid: 0, gid: 0 },
      args: ['/pause'],
      env: [],
      cwd: '/',
      capabilities: { bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] },
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: true },
    hostname: !hostNetwork(config) && config?.hostname ? config.hostname : undefined,
    // Sysctls are written through it, in the pod's namespaces.
    mounts: [{ destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] }],
    annotations,
    linux: {
      namespaces,
      ...(withUserns ? { uidMappings: (userns.uids ?? []).map(mapping), gidMappings: (userns.gids ?? []).map(mapping) } : {}),
      ...(parent ? { cgroupsPath: path.posix.join(parent, id) } : {}),
      sysctl: { ...(config?.linux?.sysctls ?? {}) },
    },
  };
}

/**
 * The contents of the pod's shared files, as CRI writes them for a pause container: the
 * pod's hostname (the host's when none is given), the host's hosts file, and a
 * resolv.conf from the pod's DNS config (the host's when it has none).
 */
export function podFileContents(
  config: PodConfig | null,
  host: { hostname: string; hosts: string; resolvConf: string },
): Record<'hostname' | 'hosts' | 'resolvConf', string> {
  const dns = config?.dnsConfig;
  let resolvConf = host.resolvConf;
  if (dns) {
    const lines: string[] = [];
    if (dns.searches?.length) lines.push(`search ${dns.searches.join(' ')}`);
    for (const s of dns.servers ?? []) lines.push(`nameserver ${s}`);
    if (dns.options?.length) lines.push(`options ${dns.options.join(' ')}`);
    resolvConf = lines.map((l) => `${l}\n`).join('');
  }
  return { hostname: `${config?.hostname || host.hostname}\n`, hosts: host.hosts, resolvConf };
}

/**
 * A container of the pod with the pod's files mounted where CRI's own flow mounts them:
 * /etc/hostname, /etc/hosts, /etc/resolv.conf (read-only with a read-only root, as CRI
 * does) and /dev/shm when the pod has its own. A destination the spec already mounts is
 * left alone, but for containerd's default private /dev/shm. `present` says which of the pod's files exist.
 */
export function withPodFiles(spec: Spec, podDir: string, present: (name: string) => boolean): Spec {
  // containerd's default spec has a private tmpfs at /dev/shm, which CRI replaces with
  // the pod's: so do we. A bind mount there is the request's own and stays.
  const privateShm = (m: Mount) => path.posix.normalize(m.destination) === '/dev/shm' && m.type === 'tmpfs';
  const mounts = (spec.mounts ?? []).filter((m) => !(privateShm(m) && present(POD_FILES.shm)));
  const taken = new Set(mounts.map((m) => path.posix.normalize(m.destination)));
  const ro = spec.root?.readonly === true ? 'ro' : 'rw';
  const wanted: [string, string, string[]][] = [
    ['/etc/hostname', POD_FILES.hostname, ['rbind', 'rprivate', ro]],
    ['/etc/hosts', POD_FILES.hosts, ['rbind', 'rprivate', ro]],
    ['/etc/resolv.conf', POD_FILES.resolvConf, ['rbind', 'rprivate', ro]],
    ['/dev/shm', POD_FILES.shm, ['rbind', 'rprivate', 'rw']],
  ];
  const added: Mount[] = wanted
    .filter(([dest, name]) => !taken.has(dest) && present(name))
    .map(([destination, name, options]) => ({ destination, type: 'bind', source: path.join(podDir, name), options }));
  return added.length ? { ...spec, mounts: [...mounts, ...added] } : spec;
}
