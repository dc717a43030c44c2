import { execFile } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import { nativeAddonPath } from '../common/native.js';
import { projectRoot } from '../common/paths.js';
import { INITRD_TOOLS, requireTools } from './host-tools.js';
import { type InitrdPayload, sharedLibraries } from './initrd.js';

const execFileAsync = promisify(execFile);

/** Adds a dynamically linked program and exactly the libraries ldd says it needs. */
export async function addBinary(files: Map<string, string>, hostPath: string, guestPath: string): Promise<void> {
  files.set(guestPath, realpathSync(hostPath));
  for (const lib of await sharedLibraries(hostPath)) files.set(lib, realpathSync(lib));
}

export const BASE_DIRS = ['proc', 'sys', 'dev', 'run', 'tmp', 'root', 'etc', 'usr/bin', 'usr/sbin', 'sbin', 'bin', 'mnt'];

/** The guest's shared userland: node, crun, the agent, the native addon and their libraries. */
export const USERLAND_DIRS = ['usr', 'lib', 'lib64', 'opt'];

/** The bundled agent this checkout puts into the guest initrd. */
export function agentBundlePath(): string {
  return path.join(projectRoot(), 'dist', 'agent', 'agent.cjs');
}

/**
 * The agent's V8 code cache, made in the staged initrd by the node that goes into it: every guest boots from a
 * fresh copy of the initrd, so a cache the agent wrote itself would never be read. Under TCG, compiling the
 * bundle is a large part of the agent's start. Made with NODE_OPTIONS unset: V8 refuses a cache made under
 * other flags (the guest's node runs with none).
 */
async function agentCodeCache(staging: string): Promise<void> {
  const dir = path.join(staging, 'opt', 'vrun');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const script = `require(${JSON.stringify(path.join(dir, 'load-bundle.js'))}).writeCodeCache(${JSON.stringify(path.join(dir, 'agent.cjs'))}, ${JSON.stringify(path.join(dir, 'agent.cjs.v8-cache'))})`;
  await execFileAsync(process.execPath, ['-e', script], { env });
}

/**
 * Node without its symbol table and debug info (99 -> 86 MB here): every boot unpacks the initrd, which is
 * mostly node, at roughly 130 MB/s under TCG, and the unpacked copy stays in guest memory. The dynamic symbols
 * the native addon links against stay. Runs before agentCodeCache, which uses the host's node (same code).
 */
async function stripNode(strip: string, staging: string): Promise<void> {
  await execFileAsync(strip, ['--strip-all', path.join(staging, 'usr', 'bin', 'node')]);
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
  files.set('/opt/vrun/agent.cjs', agent);
  files.set('/opt/vrun/load-bundle.js', path.join(root, 'bin', 'load-bundle.js'));
  files.set('/opt/vrun/vrun-agent.js', path.join(root, 'bin', 'vrun-agent.js'));
  const proto = path.join(root, 'dist', 'agent', 'agent.proto');
  if (existsSync(proto)) files.set('/opt/vrun/agent.proto', proto);
  if (existsSync(`${proto}.json`)) files.set('/opt/vrun/agent.proto.json', `${proto}.json`);
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
    // What the agent reports for GuestDetails without starting crun (see AgentConfig.crunVersion).
    ['/opt/vrun/crun.version', { content: `${(await execFileAsync(tools.crun as string, ['--version'])).stdout.split('\n')[0] ?? ''}\n`, mode: 0o644 }],
  ]);
  return {
    files,
    generated,
    dirs: [...BASE_DIRS, 'newroot', 'var/lib', 'opt/vrun'],
    // What every guest runs but none writes: served read-only from one host file (see InitrdPayload.userland).
    userland: { dirs: USERLAND_DIRS },
    derived: [
      { name: 'strip node', run: (staging) => stripNode(tools.strip as string, staging) },
      { name: 'agent code cache', run: agentCodeCache },
    ],
  };
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
