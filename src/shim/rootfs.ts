/** containerd's rootfs mount list on `<bundle>/rootfs` (docs/protocol.md). */
import * as fs from 'node:fs';
import { native } from '../native/addon';
import { parseMountOptions } from '../oci/plan';
import { MS } from '../oci/linux';

export interface RootfsMount {
  type?: string | null;
  source?: string | null;
  options?: string[] | null;
}

export function mountRootfs(mounts: RootfsMount[], target: string): void {
  if (mounts.length === 0) return;
  fs.mkdirSync(target, { recursive: true, mode: 0o711 });
  let done = 0;
  try {
    for (const m of mounts) {
      const { flags, data } = parseMountOptions(m.options ?? []);
      const type = m.type ?? '';
      const bind = type === 'bind' || (flags & MS.BIND) !== 0;
      native.mount(m.source ?? '', target, bind ? '' : type, bind ? flags | MS.BIND : flags, data.join(','));
      done++;
    }
  } catch (e) {
    for (; done > 0; done--) unmountRootfs(target);
    throw e;
  }
}

/** Unmounts everything stacked on `target`; quiet when nothing is mounted there. */
export function unmountRootfs(target: string): void {
  for (let i = 0; i < 16; i++) {
    try {
      native.umount2(target, 0);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EINVAL' || code === 'ENOENT') return; // not (or no longer) a mount point
      if (code === 'EBUSY') {
        native.umount2(target, 2 /* MNT_DETACH */);
        continue;
      }
      throw e;
    }
  }
}
