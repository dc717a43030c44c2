import { existsSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import { nativeAddonPath } from '../common/native.js';
import { projectRoot } from '../common/paths.js';
import { INITRD_TOOLS, requireTools } from './host-tools.js';
import { type InitrdPayload, sharedLibraries } from './initrd.js';

/** Adds a dynamically linked program and exactly the libraries ldd says it needs. */
export async function addBinary(files: Map<string, string>, hostPath: string, guestPath: string): Promise<void> {
  files.set(guestPath, realpathSync(hostPath));
  for (const lib of await sharedLibraries(hostPath)) files.set(lib, realpathSync(lib));
}

export const BASE_DIRS = ['proc', 'sys', 'dev', 'run', 'tmp', 'root', 'etc', 'usr/bin', 'usr/sbin', 'sbin', 'bin', 'mnt'];

/** The bundled agent this checkout puts into the guest initrd. */
export function agentBundlePath(): string {
  return path.join(projectRoot(), 'dist', 'agent', 'agent.mjs');
}

/** The guest's initrd: init, node, crun, busybox, the bundled agent and the native addon. */
export async function guestPayload(): Promise<InitrdPayload> {
  const tools = requireTools(INITRD_TOOLS);
  const root = projectRoot();
  const files = new Map<string, string>();
  await addBinary(files, process.execPath, '/usr/bin/node');
  await addBinary(files, tools.crun as string, '/usr/bin/crun');
  files.set('/bin/busybox', realpathSync(tools['busybox (static)'] as string));

  const agent = agentBundlePath();
  if (!existsSync(agent)) throw new VrunError(`agent bundle ${agent} is missing: run "npm run build" first`);
  files.set('/opt/vrun/agent.mjs', agent);
  const proto = path.join(root, 'dist', 'agent', 'agent.proto');
  if (existsSync(proto)) files.set('/opt/vrun/agent.proto', proto);
  const addon = nativeAddonPath();
  if (!existsSync(addon)) throw new VrunError(`native addon ${addon} is missing: run "npm ci" (it builds native/)`);
  await addBinary(files, addon, '/opt/vrun/vrun_native.node');

  files.set('/init', path.join(root, 'guest-image', 'init'));
  files.set('/sbin/vrun-init', path.join(root, 'guest-image', 'vrun-init'));

  const generated = new Map<string, { content: string; mode: number }>([
    ['/etc/passwd', { content: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n', mode: 0o644 }],
    ['/etc/group', { content: 'root:x:0:\nnogroup:x:65534:\n', mode: 0o644 }],
    ['/etc/hosts', { content: '127.0.0.1 localhost\n::1 localhost\n', mode: 0o644 }],
    ['/etc/resolv.conf', { content: '', mode: 0o644 }],
  ]);
  return { files, generated, dirs: [...BASE_DIRS, 'newroot', 'var/lib', 'opt/vrun'] };
}

/**
 * The KVM lab's L1 initrd: busybox and an init that mounts the host's / (9p, read-only) and runs the
 * requested command chrooted into it, so everything installed on the host is usable with L1's /dev/kvm.
 */
export async function labPayload(): Promise<InitrdPayload> {
  const tools = requireTools(INITRD_TOOLS);
  const files = new Map<string, string>([
    ['/bin/busybox', realpathSync(tools['busybox (static)'] as string)],
    ['/init', path.join(projectRoot(), 'guest-image', 'lab-init')],
  ]);
  return { files, generated: new Map(), dirs: [...BASE_DIRS, 'host', 'lab', 'ovl'] };
}
