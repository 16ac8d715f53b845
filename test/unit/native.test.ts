import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { native, SANDBOX_BINARY } from '../../src/native/addon';

const cargoVersion = /^version = "([^"]+)"/m.exec(fs.readFileSync(path.join(__dirname, '..', '..', 'addon', 'Cargo.toml'), 'utf8'))?.[1];

describe('native build', () => {
  it('loads the napi addon and reports the workspace version', () => {
    expect(cargoVersion).toBeDefined();
    expect(native.version()).toBe(cargoVersion);
  });

  it('builds tsbox-sandbox with the same version', () => {
    expect(execFileSync(SANDBOX_BINARY, ['--version'], { encoding: 'utf8' }).trim()).toBe(`tsbox-sandbox ${cargoVersion}`);
  });
});
