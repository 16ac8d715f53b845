/**
 * The front → daemon hand-over: the native front reads the command line and the config
 * file, and the daemon code reads what it wrote. Run through the built front, with a
 * stand-in for node that prints $TSBOX_SHIM.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readLaunch } from '../../src/shim/launch';

const FRONT = path.resolve(__dirname, '../../build/bin/containerd-shim-tsbox-v2');

describe('the daemon code launch', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbox-unit-launch-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads what the front hands over for a delete with leftovers', () => {
    const root = path.join(dir, 'state');
    fs.mkdirSync(path.join(root, 'c1'), { recursive: true }); // something is left: not the fast path
    const bundle = path.join(dir, 'bundle');
    fs.mkdirSync(bundle);
    fs.writeFileSync(path.join(bundle, 'tsbox.json'), JSON.stringify({ root }));
    const node = path.join(dir, 'node');
    fs.writeFileSync(node, '#!/bin/sh\nprintf %s "$TSBOX_SHIM"\n', { mode: 0o755 });
    const r = spawnSync(FRONT, ['-namespace', 'ns', '--id=c1', '-address', '/run/c.sock', '-publish-binary', '/x', '-bundle', bundle, '-debug', 'delete'], {
      env: { ...process.env, TSBOX_NODE: node },
      encoding: 'utf8',
    });
    expect(r.status).toBe(0);
    expect(readLaunch(r.stdout)).toEqual({
      action: 'delete',
      namespace: 'ns',
      id: 'c1',
      address: '/run/c.sock',
      bundle,
      socket: '',
      debug: true,
      config: { root: '/run/tsbox/containerd', grouping: 'namespace', logLevel: 'info', idleTimeout: 10, policy: '' },
    });
  });

  it('refuses flags Go would refuse, and no action', () => {
    const run = (...args: string[]) => spawnSync(FRONT, args, { encoding: 'utf8' });
    expect(run('-frobnicate')).toMatchObject({ status: 2, stderr: 'flag provided but not defined: -frobnicate\n' });
    expect(run('-namespace', 'ns').stderr).toContain('no action given');
  });

  it('refuses a malformed hand-over, naming what is wrong', () => {
    const good = {
      action: 'serve',
      namespace: 'ns',
      id: 'c1',
      address: '',
      bundle: '',
      socket: '/s',
      debug: false,
      config: { root: '/r', grouping: 'pod', logLevel: 'warn', idleTimeout: 0.5, policy: '/etc/tsbox/policy.js' },
    };
    expect(readLaunch(JSON.stringify(good))).toEqual(good);
    expect(() => readLaunch(undefined)).toThrow('$TSBOX_SHIM is not set');
    expect(() => readLaunch('{')).toThrow('$TSBOX_SHIM is not JSON');
    expect(() => readLaunch(JSON.stringify({ ...good, action: 'start' }))).toThrow('invalid action "start"');
    expect(() => readLaunch(JSON.stringify({ ...good, config: { ...good.config, grouping: 'galaxy' } }))).toThrow('invalid grouping "galaxy"');
    expect(() => readLaunch(JSON.stringify({ ...good, config: { ...good.config, idleTimeout: -1 } }))).toThrow('invalid idleTimeout -1');
    expect(() => readLaunch(JSON.stringify({ ...good, config: { ...good.config, root: 'rel' } }))).toThrow('invalid root "rel"');
    expect(() => readLaunch(JSON.stringify({ ...good, config: { ...good.config, policy: 'p.js' } }))).toThrow('invalid policy "p.js"');
    expect(() => readLaunch(JSON.stringify({ ...good, config: undefined }))).toThrow('config must be an object');
  });
});
