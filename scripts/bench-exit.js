// Exit → /tasks/exit latency as a subscriber sees it: the time `ctr events` prints a
// TaskExit minus the event's own exited_at (when the shim saw the process exit).
// Run by scripts/bench with the rig's socket; prints "tsbox p50 runc p50" in ms.
'use strict';
const { spawn, execFile } = require('node:child_process');
const [address, runs] = [process.argv[2], Number(process.argv[3] || 15)];
const now = () => performance.timeOrigin + performance.now();
const events = spawn('ctr', ['--address', address, 'events']);
const seen = new Map();
let buf = '';
events.stdout.on('data', (c) => {
  const at = now();
  buf += c.toString();
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    const m = /\/tasks\/exit (\{.*\})$/.exec(line);
    if (!m) continue;
    const ev = JSON.parse(m[1]);
    seen.set(ev.container_id, at - Date.parse(ev.exited_at));
  }
});
// Asynchronous, so the subscriber's lines are timed as they arrive.
const run = (rt, id) =>
  new Promise((resolve) => execFile('ctr', ['--address', address, 'run', '--rm', '--runtime', rt, 'localhost/busybox:latest', id, 'true'], () => resolve()));
const p50 = (xs) => xs.sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
setTimeout(async () => {
  const lat = { tsbox: [], runc: [] };
  for (let i = 0; i < runs; i++) {
    for (const [k, rt] of [
      ['tsbox', 'io.containerd.tsbox.v2'],
      ['runc', 'io.containerd.runc.v2'],
    ]) {
      const id = `exit-${k}-${i}`;
      await run(rt, id);
      lat[k].push(id);
    }
  }
  setTimeout(() => {
    const ms = (k) => lat[k].map((id) => seen.get(id)).filter((x) => x !== undefined);
    const t = ms('tsbox');
    const r = ms('runc');
    console.log(`${p50(t).toFixed(2)} ${p50(r).toFixed(2)} ${t.length} ${r.length}`);
    events.kill();
  }, 500);
}, 1000); // `ctr events` subscribes a moment after it starts
