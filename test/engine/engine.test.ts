import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/sandbox/engine';
import { makeBundle, Bundle } from './bundle';

let root: string;
let engine: Engine;
const bundles: Bundle[] = [];

beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbox-root-'));
  engine = new Engine({ root });
});

afterAll(async () => {
  for (const id of engine.store.list()) await engine.delete(id, true).catch(() => undefined);
  for (const b of bundles) b.cleanup();
  fs.rmSync(root, { recursive: true, force: true });
});

/** Runs a container to completion; returns exit status and what it wrote to stdout/stderr. */
async function run(b: Bundle): Promise<{ status: number; out: string; err: string }> {
  bundles.push(b);
  const outFile = path.join(b.dir, 'stdout');
  const errFile = path.join(b.dir, 'stderr');
  const out = fs.openSync(outFile, 'w');
  const err = fs.openSync(errFile, 'w');
  const nul = fs.openSync('/dev/null', 'r');
  try {
    await engine.create(b.id, b.dir, { stdio: [nul, out, err] });
  } finally {
    fs.closeSync(out);
    fs.closeSync(err);
    fs.closeSync(nul);
  }
  await engine.start(b.id);
  const status = await engine.wait(b.id);
  await engine.delete(b.id);
  return { status, out: fs.readFileSync(outFile, 'utf8'), err: fs.readFileSync(errFile, 'utf8') };
}

describe('engine: a container from an OCI bundle', () => {
  it('runs a process as pid 1 with the spec hostname and exit status', async () => {
    const b = makeBundle('basic', ['sh', '-c', 'echo pid=$$ host=$(hostname); exit 7']);
    const r = await run(b);
    expect(r).toEqual({ status: 7, out: `pid=1 host=${b.id}\n`, err: '' });
  });
});
