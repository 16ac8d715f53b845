/**
 * OCI hooks run by the engine in the runtime's namespaces: prestart, createRuntime,
 * poststart, poststop. (createContainer and startContainer run inside the container's
 * namespaces, so tsbox-sandbox's init runs those.) Each gets the state JSON on stdin;
 * `timeout` kills it. Failure semantics are the caller's: create hooks abort the create,
 * poststart/poststop only warn.
 */
import { spawn } from 'node:child_process';
import type { Hook, State } from '../oci/spec';
import { EngineError } from './errors';

export async function runHook(kind: string, index: number, hook: Hook, state: State): Promise<void> {
  const field = `hooks.${kind}[${index}]`;
  const [argv0, ...args] = hook.args && hook.args.length > 0 ? hook.args : [hook.path];
  const env: Record<string, string> = {};
  for (const kv of hook.env ?? []) {
    const eq = kv.indexOf('=');
    if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  await new Promise<void>((resolve, reject) => {
    const child = spawn(hook.path, args, { argv0, env, stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    let timedOut = false;
    const timer = hook.timeout
      ? setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, hook.timeout * 1000)
      : undefined;
    child.stderr.on('data', (c: Buffer) => {
      stderr = (stderr + c.toString()).slice(-1024);
    });
    child.stdin.on('error', () => undefined); // a hook need not read its stdin
    child.stdin.end(JSON.stringify(state));
    const fail = (why: string, errno?: string) =>
      reject(
        new EngineError('FailedPrecondition', `${field}: ${kind} hook ${hook.path} ${why}${stderr ? `: ${stderr.trim()}` : ''}`, {
          step: `${kind} hook`,
          errno,
          field,
        }),
      );
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      fail(`could not run: ${e.code}`, e.code);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) fail(`timed out after ${hook.timeout}s`);
      else if (code === 0) resolve();
      else fail(code !== null ? `exited with status ${code}` : `killed by ${signal}`);
    });
  });
}

export async function runHooks(kind: string, hooks: Hook[] | undefined, state: State): Promise<void> {
  for (const [i, hook] of (hooks ?? []).entries()) await runHook(kind, i, hook, state);
}
