import { execFileSync } from 'node:child_process';
import { CONTAINERD_SCRIPT } from './rig';

/**
 * One private containerd for the whole e2e run; workers find it through TSBOX_RIG_DIR.
 * TSBOX_CONTAINERD_DIR (the containerd 2.x lane) puts that containerd's binaries, ctr
 * included, first on every worker's PATH.
 */
export default function globalSetup(): void {
  const other = process.env.TSBOX_CONTAINERD_DIR;
  if (other) process.env.PATH = `${other}:${process.env.PATH ?? ''}`;
  const dir = execFileSync(CONTAINERD_SCRIPT, ['start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  process.env.TSBOX_RIG_DIR = dir;
}
