// An example tsbox policy (README: Policy). Point the shim at it with
//   policy = "/etc/tsbox/policy.js"
// in its TOML config. It runs in the shim daemon for every container (before Create) and
// every exec (before Exec); see src/shim/policy.ts for what it is given and may return.
'use strict';

// Host directories containers may bind-mount (prefixes). containerd's own files for a
// container (hosts, resolv.conf, its bundle) live under its state and root directories.
const HOST_PATHS = ['/var/lib/containerd/', '/run/containerd/', '/var/lib/kubelet/pods/'];

// What a container gets when it asks for no seccomp profile: everything but a few calls
// that have no business in a container.
const DEFAULT_SECCOMP = {
  defaultAction: 'SCMP_ACT_ALLOW',
  syscalls: [
    {
      names: ['kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module', 'open_by_handle_at', 'userfaultfd'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: 1,
    },
  ],
};

const isBind = (m) => m.type === 'bind' || (m.options || []).some((o) => o === 'bind' || o === 'rbind');

module.exports = function policy(req) {
  if (req.kind === 'exec') {
    // An exec may not hold capabilities its container was not given.
    const allowed = new Set(req.spec.process?.capabilities?.bounding ?? []);
    const extra = (req.process.capabilities?.bounding ?? []).filter((c) => !allowed.has(c));
    if (extra.length) return { deny: `exec asks for capabilities the container lacks: ${extra.join(', ')}` };
    return undefined;
  }
  const spec = req.spec;
  if ((spec.process?.capabilities?.bounding ?? []).includes('CAP_SYS_ADMIN')) return { deny: 'privileged containers (CAP_SYS_ADMIN) are not allowed' };
  for (const m of spec.mounts ?? []) {
    if (isBind(m) && !HOST_PATHS.some((p) => (m.source ?? '').startsWith(p)))
      return { deny: `host path ${m.source} (mounted at ${m.destination}) is not allowed` };
  }
  spec.process.noNewPrivileges = true;
  spec.root.readonly = true;
  spec.linux = spec.linux ?? {};
  if (!spec.linux.seccomp) spec.linux.seccomp = DEFAULT_SECCOMP;
  return { spec };
};
