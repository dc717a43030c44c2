import { errorMessage } from '../common/errors.js';
import { rootLogger, type Logger } from '../common/log.js';
import { GUEST_EXIT_PATTERN } from '../guest-image/guest-contract.js';
import { checkVmNets, guestText, type BackendDecision, type RunningVm, type VmEnd, type VmLaunch } from './backend.js';
import { createVm, type MachineEnd } from './machine.js';

/**
 * The native VMM as a sandbox backend. Unlike QEMU it is no child process: the KVM VM, its vCPU threads and
 * the device models live in the sandbox process itself, so the "VMM pid" is the sandbox's own. Killing that
 * pid kills the sandbox (whose death `ps` already reports and `rm -f` already cleans up), and stopping the VM
 * never signals a process: it stops the vCPUs and joins their threads.
 */

const KILL_JOIN_MS = 10_000;

/**
 * The machine's end in the backends' common words. `guestStatus` is what the init printed before it ended: a
 * reboot or poweroff after it is the guest ending itself with that status, as under QEMU.
 */
export function nativeVmEnd(end: MachineEnd, guestStatus: number | undefined): VmEnd {
  const status = guestStatus !== undefined ? { guestStatus } : {};
  switch (end.kind) {
    case 'exit':
      return { kind: 'exit', message: `the guest ended with status ${end.status} (native VMM)`, guestStatus: end.status };
    case 'poweroff':
    case 'reboot':
      if (guestStatus !== undefined) return { kind: 'exit', message: `the guest ended with status ${guestStatus} (native VMM)`, guestStatus };
      return { kind: end.kind, message: end.kind === 'poweroff' ? 'the guest powered off (native VMM)' : 'the guest rebooted (native VMM)' };
    case 'panic':
      return { kind: 'panic', message: `guest kernel panic (native VMM): ${guestText(end.line)}`, ...status };
    case 'stopped':
      return { kind: 'killed', message: 'the native VMM was stopped', ...status };
    case 'error':
      return { kind: 'error', message: `the native VMM failed: ${end.message}`, ...status };
  }
}

/**
 * Boots the guest on the native VMM with the devices the QEMU backend gives it: the serial console logged to
 * `consoleLog`, the `vrun.agent` console port on `agentSocket`, and one vhost-user-fs device per virtiofsd.
 * The command line is the sandbox's (the machine puts its own device parameters before it).
 */
export async function launchNative(decision: BackendDecision, spec: VmLaunch, logger?: Logger): Promise<RunningVm> {
  const log = logger ?? rootLogger();
  const machine = await createVm({
    kernel: spec.kernel,
    initrd: spec.initrd,
    cmdline: spec.cmdline,
    vcpus: spec.vcpus,
    memoryMiB: spec.memoryMiB,
    ports: [{ name: 'vrun.agent', socket: spec.agentSocket }],
    shares: spec.shares.map((s) => ({ tag: s.tag, socket: s.socketPath })),
    // The taps live in the pod's network namespace: the machine opens each there (tapOpen enters it for the open).
    nets: checkVmNets(spec.nets) === undefined ? [] : (spec.nets ?? []).map((n) => ({ tapName: n.tap, mac: n.mac, mtu: n.mtu, netns: n.netns })),
    consoleLog: spec.consoleLog,
    logger: log,
  });
  let guestStatus: number | undefined;
  machine.console.onLine((line) => {
    const m = GUEST_EXIT_PATTERN.exec(line);
    if (m) guestStatus = Number(m[1]);
  });
  machine.on('device-error', (message) => log.error({ err: message }, 'native VMM device error'));
  // Whatever ends the guest, the threads are joined and every fd and socket closed before `exited`
  // resolves; the console closes with them, which fails any waiter still hoping for a line.
  const ended = machine.start();
  const released = ended.then(async (end) => {
    await machine.destroy().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'releasing the native VM failed'));
    return end;
  });
  const exited = released.then((end) => nativeVmEnd(end, guestStatus));
  return {
    backend: decision.backend,
    pid: process.pid,
    console: machine.console,
    exited,
    diagnose: () => machine.diagnose(),
    kill: async () => {
      machine.stop();
      // vCPU threads leave KVM_RUN when kicked; one that does not must not hang the sandbox's teardown
      // (its process exit takes the threads with it).
      let timer: NodeJS.Timeout | undefined;
      const joined = await Promise.race([released.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), KILL_JOIN_MS)))]);
      clearTimeout(timer);
      if (!joined) log.error({ waitedMs: KILL_JOIN_MS }, 'the native VM\'s vCPU threads did not stop');
    },
  };
}
