//! The plan: what the TypeScript `spec → plan` layer (src/oci/plan.ts) decided, in the
//! form this process executes without further interpretation. Field names mirror the
//! TypeScript types one to one; a field either side lacks is refused, and
//! test/unit/plan-contract.test.ts sends every field through `tsbox-sandbox --echo-plan`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPlan {
    /// Absolute host path of the root filesystem.
    pub rootfs: String,
    pub rootfs_readonly: bool,
    /// MS_* propagation flags applied to "/" in the new mount namespace.
    pub rootfs_propagation: u64,
    /// CLONE_NEW* flags of the namespaces created for this container.
    pub clone_flags: u64,
    /// A new cgroup namespace, entered only after the init joined its cgroups so that
    /// the namespace's root is the container's own cgroup.
    pub unshare_cgroup_ns: bool,
    /// Namespaces joined by path, in the order to join them.
    pub join_namespaces: Vec<JoinNamespace>,
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub mounts: Vec<MountPlan>,
    /// Device nodes to create (mknod) or, in a user namespace, bind from the host.
    pub devices: Vec<DevicePlan>,
    pub bind_devices: bool,
    pub symlinks: Vec<Symlink>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub sysctls: Vec<Sysctl>,
    pub oom_score_adj: Option<i32>,
    /// `cgroup.procs` files the init joins before any of its own code runs.
    pub cgroup_procs: Vec<String>,
    /// Where to watch for OOM kills: cgroup version and the memory cgroup directory.
    pub oom_watch: Option<(u8, String)>,
    /// Stop after mounts, before pivot_root, so the engine can run createRuntime hooks.
    pub pause_for_hooks: bool,
    /// Seconds for any one setup step; None: sync::SETUP_DEADLINE_SECS.
    pub setup_deadline: Option<u64>,
    pub hooks: ContainerHooks,
    /// OCI state JSON given to hooks run by this process; "pid" is filled in here.
    pub hook_state: serde_json::Value,
    pub process: ProcessPlan,
    /// A pod sandbox's init: it holds the pod's namespaces and reaps what is reparented
    /// to it, without running any program of the container's (there is no image).
    pub pause: bool,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JoinNamespace {
    /// CLONE_NEW* flag of the namespace type.
    pub flag: u64,
    pub path: String,
    pub field: String,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountPlan {
    pub source: String,
    /// Absolute path inside the container.
    pub destination: String,
    pub fstype: String,
    pub flags: u64,
    pub data: String,
    /// MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE (| MS_REC), applied after mounting.
    pub propagation: u64,
    pub bind: bool,
    /// A bind mount whose flags (ro, nosuid, …) need a remount to take effect.
    pub remount: bool,
    /// MS_* flags set and cleared on the mount and every mount below it ("rro", …).
    pub recursive_set: u64,
    pub recursive_clear: u64,
    pub field: String,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevicePlan {
    pub path: String,
    /// S_IFCHR, S_IFBLK or S_IFIFO.
    pub file_type: u32,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub field: String,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Symlink {
    pub target: String,
    pub link: String,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Sysctl {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Deserialize, Serialize, Clone, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerHooks {
    pub create_container: Vec<HookPlan>,
    pub start_container: Vec<HookPlan>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HookPlan {
    pub path: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<u32>,
    pub field: String,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub rlimits: Vec<Rlimit>,
    pub capabilities: Option<Capabilities>,
    pub no_new_privileges: bool,
    pub terminal: bool,
    /// Initial window size of the terminal: (rows, columns).
    pub console_size: Option<(u16, u16)>,
    pub seccomp: Option<SeccompPlan>,
    /// AppArmor profile the program is confined with from its execve on.
    pub apparmor_profile: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rlimit {
    pub resource: i32,
    /// None means unlimited (RLIM_INFINITY).
    pub soft: Option<u64>,
    pub hard: Option<u64>,
    pub field: String,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub bounding: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub permitted: u64,
    pub ambient: u64,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompPlan {
    pub default_action: SeccompAction,
    pub architectures: Vec<String>,
    pub rules: Vec<SeccompRule>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompAction {
    /// kill_process, kill_thread, trap, errno, trace, allow, log
    pub kind: String,
    /// The errno for "errno", the message for "trace".
    pub value: Option<u32>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompRule {
    pub names: Vec<String>,
    pub action: SeccompAction,
    pub args: Vec<SeccompArg>,
    pub field: String,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompArg {
    pub index: u32,
    pub value: u64,
    pub value_two: u64,
    /// ne, lt, le, eq, ge, gt, masked_eq
    pub op: String,
}

/// A process started in a running container (exec).
#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecPlan {
    pub cgroup_procs: Vec<String>,
    pub process: ProcessPlan,
}
