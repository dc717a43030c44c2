import { existsSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { VrunError, errorMessage } from '../common/errors.js';
import { rootLogger, type Logger } from '../common/log.js';
import { nativeAddonPath } from '../common/native.js';
import { projectRoot } from '../common/paths.js';
import { checkVmNets, type BackendDecision, type RunningVm, type VmLaunch } from './backend.js';
import { canonicalPath, handOver, prepareVmmJail } from './jail/vmm-jail.js';
import type { VmmLaunchSpec } from './native-process/launch-spec.js';
import { EVENTS_FD, TAP_FD_BASE } from './native-process/messages.js';
import { VmmChild } from './native-process/vmm-child.js';

export { nativeVmEnd } from './native-process/vm-end.js';

/**
 * The native VMM as a sandbox backend: a process of its own (src/vmm/native-process/vmm-main.ts, bundled as
 * dist/vmm/vmm.cjs) run by node through vrun-jailer, as the jailed QEMU is: the pod's own uid/gid (with the
 * group of /dev/kvm), new mount, pid, ipc and uts namespaces, a read-only root of /usr, node's bundle, the
 * addon and the boot files, the run directory read-write, host cgroups, rlimits, no_new_privs. With NICs it
 * runs in the pod's network namespace and gets its taps as fds the jailer opened. It needs no root at all.
 */

/** How long a stopped VM may take to end (its vCPU threads joined) before its process is killed. */
const STOP_DEADLINE_MS = 10_000;
/** How long the process may take to make the machine (KVM, guest RAM, virtiofsd's handshakes, the sockets). */
const START_TIMEOUT_MS = 60_000;
/** The spec's name in the run directory. */
const SPEC_FILE = 'vmm-launch.json';

/**
 * The VMM process's memory besides guest RAM, for its memory cgroup: node itself (its heap, code, the bundle),
 * the addon, the device models' buffers and page cache it faults first (node, the kernel and the initrd it
 * reads into guest RAM). Measured in the KVM lab (test/cli/run-native.slow.test.ts: 2 vCPUs, a booted guest
 * running `sleep`): VmRSS 267 MiB, of which RssShmem 224 MiB is guest RAM (the memfd), RssAnon 7 MiB and
 * RssFile 36 MiB node's own, 9 threads. 256 leaves room for the JS heap to grow under load (console bursts,
 * virtio-net buffers, a diagnose), and page cache is reclaimed before the limit OOM-kills anything.
 */
export const NATIVE_VMM_OVERHEAD_MIB = 256;

/**
 * node's threads (main, libuv's workers, V8's platform workers), the addon's, one per vCPU, and spare: 9 in all
 * measured for 2 vCPUs, booted.
 */
export function nativePidsMax(vcpus: number): number {
  return 48 + vcpus;
}

export function vmmBundlePath(): string {
  return path.join(projectRoot(), 'dist', 'vmm', 'vmm.cjs');
}

/**
 * Boots the guest on the native VMM with the devices the QEMU backend gives it: the serial console logged to
 * `consoleLog`, the `vrun.agent` console port on `agentSocket`, and one vhost-user-fs device per virtiofsd.
 * Resolves once the machine runs (its vCPUs started); a machine that cannot be made is this call's error.
 */
export async function launchNative(decision: BackendDecision, spec: VmLaunch, logger?: Logger): Promise<RunningVm> {
  const log = logger ?? rootLogger();
  const nets = spec.nets ?? [];
  const netns = checkVmNets(nets);
  const bundle = vmmBundlePath();
  if (!existsSync(bundle)) throw new VrunError(`the native VMM's process is not built: ${bundle} is missing (run "npm run build")`);
  const addon = realpathSync(nativeAddonPath());
  const kernel = realpathSync(spec.kernel);
  const initrd = realpathSync(spec.initrd);
  const runDir = realpathSync(spec.runDir);
  if (spec.userland && spec.userland.attach !== 'pmem') throw new VrunError(`the native VMM serves the userland only as persistent memory, not as a ${spec.userland.attach}`, { kind: 'invalid' });
  const userland = spec.userland === undefined ? undefined : realpathSync(spec.userland.image);
  const launch: VmmLaunchSpec = {
    kernel,
    initrd,
    cmdline: spec.cmdline,
    vcpus: spec.vcpus,
    memoryMiB: spec.memoryMiB,
    runDir,
    agentSocket: canonicalPath(spec.agentSocket),
    shares: spec.shares.map((s) => ({ tag: s.tag, socket: canonicalPath(s.socketPath) })),
    nets: nets.map((n, i) => ({ fd: TAP_FD_BASE + i, tap: n.tap, mac: n.mac.toLowerCase(), mtu: n.mtu })),
    // VRUN_FREE_PAGE_REPORTING=0 leaves the balloon out, as in the QEMU backend (bench density compares).
    freePageReporting: process.env.VRUN_FREE_PAGE_REPORTING !== '0',
    ...(userland === undefined ? {} : { userlandPmem: userland }),
  };
  const node = realpathSync(process.execPath);
  const jail = prepareVmmJail({
    runDir,
    files: [bundle, addon, kernel, initrd, ...(userland === undefined ? [] : [userland]), ...(node.startsWith('/usr/') ? [] : [node])],
    sockets: launch.shares.map((s) => s.socket),
    kvm: true,
    memoryMiB: spec.memoryMiB,
    vcpus: spec.vcpus,
    overheadMiB: NATIVE_VMM_OVERHEAD_MIB,
    pidsMax: nativePidsMax(spec.vcpus),
    net: netns === undefined ? undefined : { netns, taps: launch.nets.map((n) => ({ fd: n.fd, name: n.tap })) },
    env: { VRUN_NATIVE_ADDON: addon, VRUN_LOG_LEVEL: log.level },
    keepFds: [EVENTS_FD],
    logger: log,
  });
  let child: VmmChild;
  try {
    // The spec is read by the jail's uid, in the run directory it now owns; the path (under the sandbox's own
    // directory) is in the process's command line, which is how cleanup recognizes it as the pod's.
    const specFile = path.join(runDir, SPEC_FILE);
    writeFileSync(specFile, JSON.stringify(launch), { mode: 0o600 });
    handOver(specFile, jail.id, 0o400);
    const run = jail.wrap(node, [bundle, specFile]);
    log.debug({ command: run.command, args: run.args }, 'starting the native VMM process');
    child = new VmmChild(run.command, run.args, { consoleLog: spec.consoleLog, logger: log });
  } catch (err) {
    await jail.teardown();
    throw err;
  }
  jail.started(child.pid);
  const exited = child.exited.then(async (end) => {
    await jail.teardown().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'tearing down the VMM jail failed'));
    return end;
  });
  let timer: NodeJS.Timeout | undefined;
  const started = await Promise.race([child.started, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), START_TIMEOUT_MS)))]);
  clearTimeout(timer);
  if (started !== true) {
    if (started === 'timeout') await child.stop(0, log);
    const end = await exited;
    throw new VrunError(started === 'timeout' ? `the native VMM process did not start the machine within ${START_TIMEOUT_MS} ms` : end.message);
  }
  // The VMM itself, under its jailer (which only relays signals and mirrors its end).
  const vmmPid = child.childPid() ?? child.pid;
  return {
    backend: decision.backend,
    pid: vmmPid,
    console: child.console,
    exited,
    diagnose: () => child.diagnose(),
    kill: async () => {
      await child.stop(STOP_DEADLINE_MS, log);
      await exited;
    },
  };
}
