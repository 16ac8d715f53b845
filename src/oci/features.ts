/**
 * The OCI runtime features document (runtime-spec features.md): what this runtime
 * accepts in a spec. `tsbox features` prints it, and the shim's `-info` answer carries
 * it to containerd 2, whose CRI reads e.g. "rro" support from `mountOptions`. Built from
 * the same tables the spec → plan layer uses, so it cannot claim what the plan refuses.
 */
import { CAPABILITIES, MOUNT_FLAG_OPTIONS, NAMESPACE_FLAGS, PROPAGATION_OPTIONS, RECURSIVE_MOUNT_OPTIONS } from './linux';
import { IGNORED_BIND_OPTIONS, SECCOMP_ACTIONS, SECCOMP_FLAGS, SECCOMP_OPS } from './plan';

export interface Features {
  ociVersionMin: string;
  ociVersionMax: string;
  hooks: string[];
  mountOptions: string[];
  linux: {
    namespaces: string[];
    capabilities: string[];
    cgroup: { v1: boolean; v2: boolean; systemd: boolean; systemdUser: boolean; rdma: boolean };
    seccomp: { enabled: boolean; actions: string[]; operators: string[]; archs: string[]; knownFlags: string[]; supportedFlags: string[] };
    apparmor: { enabled: boolean };
    selinux: { enabled: boolean };
    intelRdt: { enabled: boolean };
    mountExtensions: { idmap: { enabled: boolean } };
  };
  annotations: Record<string, string>;
}

/** Architectures libseccomp (which tsbox-sandbox links) knows by these names. */
const SECCOMP_ARCHS = [
  'SCMP_ARCH_AARCH64',
  'SCMP_ARCH_ARM',
  'SCMP_ARCH_MIPS',
  'SCMP_ARCH_MIPS64',
  'SCMP_ARCH_MIPS64N32',
  'SCMP_ARCH_MIPSEL',
  'SCMP_ARCH_MIPSEL64',
  'SCMP_ARCH_MIPSEL64N32',
  'SCMP_ARCH_PPC',
  'SCMP_ARCH_PPC64',
  'SCMP_ARCH_PPC64LE',
  'SCMP_ARCH_RISCV64',
  'SCMP_ARCH_S390',
  'SCMP_ARCH_S390X',
  'SCMP_ARCH_X32',
  'SCMP_ARCH_X86',
  'SCMP_ARCH_X86_64',
];

export function features(version: string): Features {
  const sorted = (xs: Iterable<string>) => [...new Set(xs)].sort();
  return {
    ociVersionMin: '1.0.0',
    ociVersionMax: '1.2.0',
    hooks: ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'],
    mountOptions: sorted([
      'defaults',
      ...Object.keys(MOUNT_FLAG_OPTIONS),
      ...Object.keys(RECURSIVE_MOUNT_OPTIONS),
      ...Object.keys(PROPAGATION_OPTIONS),
      ...IGNORED_BIND_OPTIONS,
    ]),
    linux: {
      namespaces: sorted(Object.keys(NAMESPACE_FLAGS)),
      capabilities: [...CAPABILITIES],
      cgroup: { v1: true, v2: true, systemd: false, systemdUser: false, rdma: false },
      seccomp: {
        enabled: true,
        actions: sorted(Object.keys(SECCOMP_ACTIONS)),
        operators: sorted(Object.keys(SECCOMP_OPS)),
        archs: SECCOMP_ARCHS,
        knownFlags: sorted(SECCOMP_FLAGS),
        // Accepted, but none changes what is loaded (the init is single-threaded).
        supportedFlags: [],
      },
      // Applied at execve where the host has AppArmor (refused where it has not).
      apparmor: { enabled: true },
      selinux: { enabled: false },
      intelRdt: { enabled: false },
      mountExtensions: { idmap: { enabled: false } },
    },
    annotations: { 'io.github.tsbox.version': version },
  };
}
