#!/usr/bin/env node
// Pod sandboxes through CRI, as kubelet makes them, on one private containerd 2.x: runc and
// tsbox with a pause container each (sandboxer podsandbox), and tsbox-shim (the shim
// sandboxer: no pause container). Interleaved; prints p50/p90 per handler and the memory
// of the processes each running pod adds. A benchmark, never a test.
//   scripts/bench-pods [RUNS] [PODS]   (default 15 cycles each, 10 pods held for memory)
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const top = path.resolve(__dirname, '..');
const runs = Number(process.argv[2] ?? 15);
const held = Number(process.argv[3] ?? 10);
const handlers = ['runc', 'tsbox', 'tsbox-shim'];

const env = { ...process.env, TSBOX_CONTAINERD_DIR: execFileSync(path.join(top, 'scripts/containerd2-dir'), { encoding: 'utf8' }).trim() };
const rig = execFileSync(path.join(top, 'scripts/containerd'), ['start'], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  .trim()
  .split('\n')
  .pop();
const stop = () => execFileSync(path.join(top, 'scripts/containerd'), ['stop', rig], { stdio: 'ignore' });

const def = loader.loadSync(path.join(top, 'test/cri/api.proto'), { keepCase: true, longs: Number, enums: String, defaults: true });
const { RuntimeService } = grpc.loadPackageDefinition(def).runtime.v1;
const cri = new RuntimeService(`unix://${rig}/containerd.sock`, grpc.credentials.createInsecure());
const call = (method, req) => new Promise((resolve, reject) => cri[method](req, (err, res) => (err ? reject(err) : resolve(res))));

let n = 0;
async function runPod(handler) {
  n++;
  const uid = `bench-${process.pid}-${n}`;
  const config = {
    metadata: { name: uid, uid, namespace: 'bench', attempt: 0 },
    hostname: uid,
    log_directory: path.join(rig, 'pod-logs', uid),
    linux: { cgroup_parent: `/kubepods/pod${uid}`, security_context: { namespace_options: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
  };
  return (await call('RunPodSandbox', { config, runtime_handler: handler })).pod_sandbox_id;
}
async function removePod(id) {
  await call('StopPodSandbox', { pod_sandbox_id: id });
  await call('RemovePodSandbox', { pod_sandbox_id: id });
}

function pss(pid) {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}
/** PSS (kB) of every process of the runtime and its pods: the shims and daemons
 * containerd started, and everything below them. */
function runtimePss() {
  const procs = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  const parent = new Map();
  for (const p of procs) {
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      parent.set(p, stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      // gone
    }
  }
  const cmd = (p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
    } catch {
      return '';
    }
  };
  const roots = procs.filter((p) => cmd(p).includes(`${rig}/containerd.sock`) && !cmd(p).startsWith('containerd\0'));
  const all = new Set(roots);
  // Detached shims and sandboxes are reparented to PID 1: follow children from the roots.
  for (let grew = true; grew;) {
    grew = false;
    for (const [p, pp] of parent) if (all.has(pp) && !all.has(p)) (all.add(p), (grew = true));
  }
  return [...all].reduce((sum, p) => sum + pss(p), 0);
}

const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
const pct = (xs, q) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) * q)];

(async () => {
  try {
    const times = Object.fromEntries(handlers.map((h) => [h, { run: [], remove: [] }]));
    for (const h of handlers) await removePod(await runPod(h)); // warm: images, daemons
    for (let i = 0; i < runs; i++) {
      for (const h of handlers) {
        let t0 = process.hrtime.bigint();
        const id = await runPod(h);
        times[h].run.push(ms(t0));
        t0 = process.hrtime.bigint();
        await removePod(id);
        times[h].remove.push(ms(t0));
      }
    }
    const memory = {};
    for (const h of handlers) {
      // One pod held throughout keeps a tsbox daemon from leaving (idle_timeout) between
      // the two readings: the figure is what each further pod adds.
      const anchor = await runPod(h);
      const before = runtimePss();
      const pods = [anchor];
      for (let i = 0; i < held; i++) pods.push(await runPod(h));
      memory[h] = (runtimePss() - before) / held;
      for (const id of pods) await removePod(id);
    }
    console.log(`containerd ${env.TSBOX_CONTAINERD_DIR.split('-').pop()}, ${runs} interleaved cycles per handler; memory: ${held} pods held`);
    for (const h of handlers) {
      const t = times[h];
      console.log(
        `${h.padEnd(11)} RunPodSandbox p50 ${pct(t.run, 0.5).toFixed(1)} p90 ${pct(t.run, 0.9).toFixed(1)} ms | stop+remove p50 ${pct(t.remove, 0.5).toFixed(1)} ms | PSS per pod ${(memory[h] / 1024).toFixed(2)} MB`,
      );
    }
    const r = (h, k) => (pct(times[h][k], 0.5) / pct(times.runc[k], 0.5)).toFixed(2);
    console.log(`ratios to runc (p50 RunPodSandbox): tsbox ${r('tsbox', 'run')}, tsbox-shim ${r('tsbox-shim', 'run')}`);
  } finally {
    cri.close();
    stop();
  }
})().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
