/**
 * The operator's policy (`policy = "/etc/tsbox/policy.js"` in the config): a CommonJS
 * module whose exported function sees each container's spec before Create and each exec's
 * process before Exec, and allows it, denies it with a reason, or returns a changed one.
 *
 *   module.exports = (req) => ...
 *   req: { kind: 'container', namespace, id, spec, annotations, image }
 *      | { kind: 'exec', namespace, id, execId, process, spec }   (spec: the container's)
 *   return: undefined (allow) | { deny: 'reason' } | { spec } (container) | { process } (exec)
 *
 * It may be async. It is loaded again when the file changes. A policy that throws, returns
 * something else or takes longer than its time limit denies, and says so.
 */
import * as fs from 'node:fs';
import * as vm from 'node:vm';
import type { Process, Spec } from '../oci/spec';
import { Code, RpcError } from '../ttrpc';

export type PolicyRequest =
  | { kind: 'container'; namespace: string; id: string; spec: Spec; annotations: Record<string, string>; image: string | null }
  | { kind: 'exec'; namespace: string; id: string; execId: string; process: Process; spec: Spec };

type PolicyFn = (req: PolicyRequest) => unknown;

/** What an async policy's timer rejects with. */
const LATE = new Error('late');

/** CRI names the image in the spec's annotations; ctr's containers carry none. */
const IMAGE_ANNOTATIONS = ['io.kubernetes.cri.image-name', 'org.opencontainers.image.ref.name'];

export class Policy {
  private loaded: { mtimeMs: number; size: number; fn: PolicyFn } | null = null;

  constructor(
    readonly file: string,
    private readonly timeoutMs = 2000,
  ) {}

  /** The spec to create with: `spec` itself when allowed unchanged; throws PermissionDenied. */
  async container(namespace: string, id: string, spec: Spec): Promise<Spec> {
    const annotations = spec.annotations ?? {};
    const image = IMAGE_ANNOTATIONS.map((k) => annotations[k]).find((v) => v !== undefined) ?? null;
    const out = await this.ask({ kind: 'container', namespace, id, spec: structuredClone(spec), annotations: { ...annotations }, image }, `container ${id}`);
    return (out?.spec as Spec | undefined) ?? spec;
  }

  /** The process to exec: `process` itself when allowed unchanged; throws PermissionDenied. */
  async exec(namespace: string, id: string, execId: string, process: Process, spec: Spec): Promise<Process> {
    const out = await this.ask(
      { kind: 'exec', namespace, id, execId, process: structuredClone(process), spec: structuredClone(spec) },
      `exec ${execId} in container ${id}`,
    );
    return (out?.process as Process | undefined) ?? process;
  }

  private deny(what: string, why: string): RpcError {
    return new RpcError(Code.PERMISSION_DENIED, `policy ${this.file} denied ${what}: ${why}`);
  }

  private load(): PolicyFn {
    const st = fs.statSync(this.file);
    if (this.loaded && this.loaded.mtimeMs === st.mtimeMs && this.loaded.size === st.size) return this.loaded.fn;
    // Compiled as a CommonJS module of its own, not through require's cache, so an edit is
    // picked up at the next request and nothing of the old version stays referenced.
    const mod = { exports: {} as unknown };
    const wrapper = vm.runInThisContext(`(function (module, exports, require) {${fs.readFileSync(this.file, 'utf8')}\n})`, { filename: this.file }) as (
      m: typeof mod,
      e: unknown,
      r: NodeJS.Require,
    ) => void;
    wrapper(mod, mod.exports, require);
    const exported = mod.exports as PolicyFn | { default?: PolicyFn; policy?: PolicyFn };
    const fn = typeof exported === 'function' ? exported : (exported.default ?? exported.policy);
    if (typeof fn !== 'function') throw new Error('it exports no function');
    this.loaded = { mtimeMs: st.mtimeMs, size: st.size, fn };
    return fn;
  }

  private async ask(req: PolicyRequest, what: string): Promise<Record<string, unknown> | undefined> {
    let result: unknown;
    try {
      const fn = this.load();
      // vm's time limit interrupts a synchronous loop; an async policy gets a timer.
      result = vm.runInNewContext('fn(req)', { fn, req }, { timeout: this.timeoutMs });
      if (typeof (result as { then?: unknown } | null)?.then === 'function') {
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(LATE), this.timeoutMs);
        });
        try {
          result = await Promise.race([result as Promise<unknown>, late]);
        } finally {
          clearTimeout(timer);
        }
      }
    } catch (e) {
      // What the policy threw may come from another realm (the vm context): not instanceof Error.
      const msg = typeof e === 'object' && e !== null && 'message' in e ? String(e.message) : String(e);
      const late = /Script execution timed out/.test(msg) || e === LATE;
      throw this.deny(what, late ? `no answer within ${this.timeoutMs} ms` : `it failed: ${msg}`);
    }
    if (result === undefined || result === null || result === true) return undefined;
    if (typeof result !== 'object') throw this.deny(what, `it returned ${JSON.stringify(result)}`);
    const out = result as Record<string, unknown>;
    if (out.deny !== undefined) throw this.deny(what, typeof out.deny === 'string' ? out.deny : JSON.stringify(out.deny));
    const key = req.kind === 'container' ? 'spec' : 'process';
    if (out[key] !== undefined && (typeof out[key] !== 'object' || out[key] === null)) throw this.deny(what, `its ${key} is not an object`);
    return out;
  }
}
