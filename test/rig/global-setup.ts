import { execFileSync } from 'node:child_process';
import { CONTAINERD_SCRIPT } from './rig';

/** One private containerd for the whole e2e run; workers find it through TSBOX_RIG_DIR. */
export default function globalSetup(): void {
  const dir = execFileSync(CONTAINERD_SCRIPT, ['start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
  process.env.TSBOX_RIG_DIR = dir;
}
