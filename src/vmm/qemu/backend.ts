import { realpathSync } from 'node:fs';
import { errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { BackendDecision, RunningVm, VmEnd, VmLaunch } from '../backend.js';
import { canonicalPath, prepareQemuJail, TCG_TB_MIB, type QemuJail } from '../jail/qemu-jail.js';
import type { QemuSpec } from './command.js';
import { QemuVm } from './machine.js';

/**
 * QEMU as a sandbox backend. QEMU runs confined by native/jailer (own uid/gid, namespaces, a read-only root of
 * just what it needs, host cgroups, rlimits) and by its own seccomp filter. VRUN_JAIL=0 starts it unconfined,
 * for debugging only.
 */
export function launchQemu(decision: BackendDecision, spec: VmLaunch, logger?: Logger): RunningVm {
  const unjailed = process.env.VRUN_JAIL === '0';
  const kernel = realpathSync(spec.kernel);
  const initrd = realpathSync(spec.initrd);
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
    tcgTbMiB: TCG_TB_MIB,
  };
  let jail: QemuJail | undefined;
  if (unjailed) {
    logger?.warn('VRUN_JAIL=0: QEMU runs as root, unconfined (no jail, no per-pod uid, no cgroups); for debugging only');
  } else {
    jail = prepareQemuJail({
      runDir: spec.runDir,
      files: [kernel, initrd],
      sockets: qemuSpec.shares?.map((s) => s.socketPath) ?? [],
      accel: decision.accel,
      memoryMiB: spec.memoryMiB,
      vcpus: spec.vcpus,
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
