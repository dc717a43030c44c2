import { realpathSync, statSync } from 'node:fs';
import { errorMessage, VrunError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { checkVmNets, type BackendDecision, type RunningVm, type VmEnd, type VmLaunch } from '../backend.js';
import { canonicalPath, prepareQemuJail, TCG_TB_MIB, type QemuJail } from '../jail/qemu-jail.js';
import type { QemuSpec } from './command.js';
import { QemuVm } from './machine.js';
import { placeUserlandPmem } from './userland-pmem.js';

/** How the guest init (guest-image/vrun-init) finds the userland disk. */
export const USERLAND_DISK_SERIAL = 'vrun-userland';

/** QEMU's fd for the tap of `nets[i]`: the jailer puts it there, right above stdio. */
export const TAP_FD_BASE = 3;

/**
 * QEMU as a sandbox backend. QEMU runs confined by native/jailer (own uid/gid, namespaces, a read-only root of
 * just what it needs, host cgroups, rlimits) and by its own seccomp filter. VRUN_JAIL=0 starts it unconfined,
 * for debugging only.
 *
 * With `nets`, the jailer joins the pod's network namespace instead of making an empty one, and opens each
 * tap there as root before it drops privileges: QEMU gets the fds (`-netdev tap,fd=N`), so its jail needs no
 * /dev/net/tun, the taps need no owner (the jail id is only reserved here, after the taps were made), and
 * QEMU can reach no other tap.
 */

/**
 * TCG's translated-code cache is QEMU's largest anonymous memory: an idle pod fills whatever cap it is given
 * (bench/results/density.md). VRUN_TCG_TB_MIB overrides the cap, for measuring its cost.
 */
function tcgTbMiB(): number {
  const env = process.env.VRUN_TCG_TB_MIB;
  if (env === undefined || env === '') return TCG_TB_MIB;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 8 || n > 1024) throw new VrunError(`VRUN_TCG_TB_MIB=${env}: expected a whole number of MiB from 8 to 1024`, { kind: 'invalid' });
  return n;
}

type Attachment = { kind: 'disk'; path: string } | { kind: 'pmem'; path: string; sizeMiB: number };

/**
 * The userland as persistent memory where it fits in the guest's memory map, else as a read-only disk: the
 * same files either way, only the guest's page cache of them differs (userland-pmem.ts).
 */
function userlandAttachment(image: string, wanted: 'disk' | 'pmem', memoryMiB: number, logger?: Logger): Attachment {
  if (wanted === 'disk') return { kind: 'disk', path: image };
  const placed = placeUserlandPmem(memoryMiB, statSync(image).size);
  if (placed.ok) return { kind: 'pmem', path: image, sizeMiB: placed.sizeMiB };
  logger?.info({ reason: placed.reason }, 'the userland is served from a read-only disk instead of persistent memory');
  return { kind: 'disk', path: image };
}

export function launchQemu(decision: BackendDecision, spec: VmLaunch, logger?: Logger): RunningVm {
  const unjailed = process.env.VRUN_JAIL === '0';
  const nets = spec.nets ?? [];
  const netns = checkVmNets(nets);
  if (netns !== undefined && unjailed) {
    // Unjailed QEMU runs in the host's network namespace, where the pod's taps are not.
    throw new VrunError('VRUN_JAIL=0 cannot run a VM with a pod network: only the jailer joins the pod network namespace', { kind: 'precondition' });
  }
  const kernel = realpathSync(spec.kernel);
  const initrd = realpathSync(spec.initrd);
  const userland = spec.userland === undefined ? undefined : realpathSync(spec.userland.image);
  const attach = userland === undefined ? undefined : userlandAttachment(userland, spec.userland?.attach ?? 'disk', spec.memoryMiB, logger);
  const qemuSpec: QemuSpec = {
    kernel,
    initrd,
    cmdline: spec.cmdline,
    vcpus: spec.vcpus,
    memoryMiB: spec.memoryMiB,
    accel: decision.accel,
    ports: [{ name: 'vrun.agent', socketPath: canonicalPath(spec.agentSocket) }],
    shares: spec.shares.map((s) => ({ tag: s.tag, socketPath: canonicalPath(s.socketPath) })),
    sandbox: true,
    tcgTbMiB: tcgTbMiB(),
    // VRUN_FREE_PAGE_REPORTING=0 leaves the balloon out, for measuring what it gives back (bench density).
    freePageReporting: process.env.VRUN_FREE_PAGE_REPORTING !== '0',
    ...(attach?.kind === 'disk' ? { readonlyDisks: [{ path: attach.path, serial: USERLAND_DISK_SERIAL }] } : {}),
    ...(attach?.kind === 'pmem' ? { userlandPmem: { path: attach.path, sizeMiB: attach.sizeMiB } } : {}),
    nets: nets.map((n, i) => ({ fd: TAP_FD_BASE + i, mac: n.mac.toLowerCase(), mtu: n.mtu })),
  };
  let jail: QemuJail | undefined;
  if (unjailed) {
    logger?.warn('VRUN_JAIL=0: QEMU runs as root, unconfined (no jail, no per-pod uid, no cgroups); for debugging only');
  } else {
    jail = prepareQemuJail({
      runDir: spec.runDir,
      files: [kernel, initrd, ...(userland ? [userland] : [])],
      sockets: qemuSpec.shares?.map((s) => s.socketPath) ?? [],
      accel: decision.accel,
      memoryMiB: spec.memoryMiB,
      vcpus: spec.vcpus,
      net: netns === undefined ? undefined : { netns, taps: nets.map((n, i) => ({ fd: TAP_FD_BASE + i, name: n.tap })) },
      logger,
    });
  }
  let vm: QemuVm;
  try {
    vm = QemuVm.start(qemuSpec, { consoleLog: spec.consoleLog, logger, wrap: jail?.wrap });
  } catch (err) {
    void jail?.teardown();
    throw err;
  }
  jail?.started(vm.pid);
  const exited = vm.exited.then(async (e): Promise<VmEnd> => {
    await jail?.teardown().catch((err: unknown) => logger?.warn({ err: errorMessage(err) }, 'tearing down the VMM jail failed'));
    return e.end;
  });
  return {
    backend: `qemu-${decision.accel}`,
    pid: vm.pid,
    vmmPid: () => vm.vmmPid(),
    console: vm.console,
    exited,
    kill: async () => {
      await vm.kill();
      await exited;
    },
  };
}
