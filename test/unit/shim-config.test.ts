/** What the daemon reads before it does anything: flags and its config file. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_CONFIG, loadConfig } from '../../src/shim/config';
import { parseShimFlags } from '../../src/shim/flags';

describe('shim flags', () => {
  it('takes every form containerd and Go flag parsing allow', () => {
    const f = parseShimFlags(['-namespace', 'k8s.io', '--id=abc', '-address', '/run/c.sock', '-publish-binary', '/usr/bin/containerd', '-debug', 'start']);
    expect(f).toMatchObject({ namespace: 'k8s.io', id: 'abc', address: '/run/c.sock', debug: true, action: 'start' });
    expect(parseShimFlags(['-namespace=x', '-id', 'y', '-bundle', '/b', 'delete'])).toMatchObject({ bundle: '/b', action: 'delete' });
    expect(() => parseShimFlags(['-frobnicate'])).toThrow('flag provided but not defined: -frobnicate');
  });
});

describe('shim config', () => {
  it('reads the TOML file and refuses what it does not know', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbox-cfg-'));
    const file = path.join(dir, 'c.toml');
    fs.writeFileSync(file, 'root = "/var/run/tsbox2"\ngrouping = "pod"\nlog_level = "debug"\nidle_timeout = 0\n');
    expect(loadConfig(file)).toEqual({ root: '/var/run/tsbox2', grouping: 'pod', logLevel: 'debug', idleTimeout: 0 });
    fs.writeFileSync(file, 'grouping = "galaxy"\n');
    expect(() => loadConfig(file)).toThrow('invalid setting grouping = "galaxy"');
    expect(loadConfig(undefined)).toBe(DEFAULT_CONFIG);
    fs.rmSync(dir, { recursive: true });
  });
});
