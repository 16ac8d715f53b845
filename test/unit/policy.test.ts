/** The policy hook (src/shim/policy.ts) with real modules on disk. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Policy } from '../../src/shim/policy';
import type { Process, Spec } from '../../src/oci/spec';
import { Code, RpcError } from '../../src/ttrpc';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbox-policy-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let n = 0;
function policyFile(code: string): string {
  const file = path.join(dir, `p${n++}.js`);
  fs.writeFileSync(file, code);
  return file;
}

const spec = (): Spec => ({
  ociVersion: '1.0.2',
  root: { path: 'rootfs' },
  process: { args: ['sh'], cwd: '/', user: { uid: 0, gid: 0 } },
  annotations: { 'io.kubernetes.cri.image-name': 'localhost/busybox:latest' },
});
const proc = (): Process => ({ args: ['id'], cwd: '/', user: { uid: 0, gid: 0 } });

/** The error a denial throws: PermissionDenied naming the policy file. */
async function denial(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(RpcError);
  expect((e as RpcError).code).toBe(Code.PERMISSION_DENIED);
  return (e as RpcError).message;
}

describe('Policy', () => {
  it('allows, denies with the reason, and sees what the request is about', async () => {
    const file = policyFile(
      `module.exports = (r) => r.kind === 'container' && r.image !== 'localhost/busybox:latest' ? { deny: 'image ' + r.image } : r.kind === 'exec' && r.process.args[0] === 'nc' ? { deny: 'no nc in ' + r.id } : undefined;`,
    );
    const p = new Policy(file);
    const s = spec();
    expect(await p.container('ns', 'c1', s)).toBe(s);
    expect(await denial(p.container('ns', 'c1', { ...s, annotations: {} }))).toBe(`policy ${file} denied container c1: image null`);
    const pr = proc();
    expect(await p.exec('ns', 'c1', 'e1', pr, s)).toBe(pr);
    expect(await denial(p.exec('ns', 'c1', 'e1', { ...pr, args: ['nc'] }, s))).toBe(`policy ${file} denied exec e1 in container c1: no nc in c1`);
  });

  it('returns the changed spec or process, and a policy changes only its own copy', async () => {
    const p = new Policy(
      policyFile(
        `module.exports = (r) => { if (r.kind === 'exec') { r.process.env = ['X=1']; return { process: r.process }; } r.spec.root.readonly = true; r.spec.annotations.seen = 'yes'; };`,
      ),
    );
    const s = spec();
    expect(await p.container('ns', 'c1', s)).toBe(s); // mutated its copy, returned nothing
    expect(s.root?.readonly).toBeUndefined();
    const q = new Policy(policyFile(`module.exports = async (r) => { r.spec.root.readonly = true; return { spec: r.spec }; };`));
    expect((await q.container('ns', 'c1', s)).root).toEqual({ path: 'rootfs', readonly: true });
    expect(await p.exec('ns', 'c1', 'e1', proc(), s)).toEqual({ ...proc(), env: ['X=1'] });
  });

  it('denies when the policy fails, answers nonsense or takes too long', async () => {
    const deny = async (code: string, timeoutMs = 2000) => denial(new Policy(policyFile(code), timeoutMs).container('ns', 'c1', spec()));
    expect(await deny(`module.exports = () => { throw new Error('boom'); };`)).toMatch(/denied container c1: it failed: boom$/);
    expect(await deny(`module.exports = () => 'yes';`)).toMatch(/denied container c1: it returned "yes"$/);
    expect(await deny(`module.exports = () => ({ spec: 3 });`)).toMatch(/its spec is not an object$/);
    expect(await deny(`module.exports = { nothing: 1 };`)).toMatch(/it failed: it exports no function$/);
    expect(await deny(`module.exports = (`)).toMatch(/it failed: /);
    expect(await deny(`module.exports = () => { for (;;); };`, 100)).toMatch(/denied container c1: no answer within 100 ms$/);
    expect(await deny(`module.exports = () => new Promise(() => undefined);`, 100)).toMatch(/denied container c1: no answer within 100 ms$/);
  });

  it('reads the module again when it changes', async () => {
    const file = policyFile(`module.exports = () => undefined;`);
    const p = new Policy(file);
    expect(await p.container('ns', 'c1', spec())).toBeDefined();
    fs.writeFileSync(file, `module.exports = () => ({ deny: 'version two' });`);
    expect(await denial(p.container('ns', 'c1', spec()))).toMatch(/version two$/);
  });

  it('refuses what the example policy refuses and hardens what it allows', async () => {
    const p = new Policy(path.resolve(__dirname, '../../examples/policy.js'));
    const privileged = spec();
    privileged.process!.capabilities = { bounding: ['CAP_SYS_ADMIN'] };
    expect(await denial(p.container('ns', 'c1', privileged))).toMatch(/privileged containers \(CAP_SYS_ADMIN\) are not allowed$/);
    const hostPath = { ...spec(), mounts: [{ destination: '/host', type: 'bind', source: '/etc', options: ['rbind'] }] };
    expect(await denial(p.container('ns', 'c1', hostPath))).toMatch(/host path \/etc \(mounted at \/host\) is not allowed$/);
    const out = await p.container('ns', 'c1', spec());
    expect([out.process?.noNewPrivileges, out.root?.readonly, out.linux?.seccomp?.defaultAction]).toEqual([true, true, 'SCMP_ACT_ALLOW']);
    const extra = { ...proc(), capabilities: { bounding: ['CAP_NET_ADMIN'] } };
    expect(await denial(p.exec('ns', 'c1', 'e1', extra, spec()))).toMatch(/capabilities the container lacks: CAP_NET_ADMIN$/);
  });
});
