/** What the shim reads before it does anything: flags, options, its config file, the group. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writer } from 'protobufjs/minimal';
import { configPathFromOptions, decodeAny, DEFAULT_CONFIG, groupKey, loadConfig } from '../../src/shim/config';
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
  it('finds config_path in runtimeoptions.v1.Options and ignores other option types', () => {
    const opts = Writer.create().uint32(10).string('io.containerd.tsbox.v1.Options').uint32(18).string('/etc/tsbox.toml').finish();
    const any = Writer.create().uint32(10).string('runtimeoptions.v1.Options').uint32(18).bytes(opts).finish();
    expect(configPathFromOptions(decodeAny(any))).toBe('/etc/tsbox.toml');
    const other = Writer.create().uint32(10).string('containerd.linux.runc.CreateOptions').uint32(18).bytes(new Uint8Array([8, 1])).finish();
    expect(configPathFromOptions(decodeAny(other))).toBeUndefined();
    expect(decodeAny(new Uint8Array())).toBeNull();
  });

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

  it('groups by namespace, pod annotation or container', () => {
    const ann = { 'io.kubernetes.cri.sandbox-id': 'pod1' };
    expect(groupKey('namespace', 'c1', ann)).toBe('namespace');
    expect(groupKey('pod', 'c1', ann)).toBe('pod:pod1');
    expect(groupKey('pod', 'c1', { 'io.containerd.runc.v2.group': 'g', ...ann })).toBe('pod:g');
    expect(groupKey('pod', 'c1', {})).toBe('container:c1');
    expect(groupKey('container', 'c1', ann)).toBe('container:c1');
  });
});
