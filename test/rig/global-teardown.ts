import { execFileSync } from 'node:child_process';
import { CONTAINERD_SCRIPT } from './rig';

export default function globalTeardown(): void {
  const dir = process.env.TSBOX_RIG_DIR;
  if (dir) execFileSync(CONTAINERD_SCRIPT, ['stop', dir], { stdio: 'inherit' });
}
