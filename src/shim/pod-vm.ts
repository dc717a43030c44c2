import { mkdir } from 'node:fs/promises';
import { AgentClient, type GuestDetails } from '../agent/client.js';
import { VrunError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { loadGuestImage } from '../guest-image/image.js';
import { Virtiofsd } from '../sandbox/virtiofsd.js';
import { decideBackend, launchQemu, type RunningVm } from '../sandbox/vmm-backend.js';
import { BASE_CMDLINE, READY_PATTERN } from '../vmm/qemu/guest-runner.js';
import type { PodPaths } from './pod-paths.js';
import type { PodVmConfig } from './runtime-options.js';

/**
 * The pod's VM: one virtiofsd serving the pod's shared directory (every container's rootfs and bind mounts
 * live under it), the VMM, and the agent client. Built from the same pieces as src/sandbox's single-container
 * Sandbox (virtiofsd.ts, vmm-backend.ts, the guest image); a pod holds several containers, which that class
 * does not, so the boot sequence lives here until src/sandbox grows a multi-container pod.
 */
const SHARE_TAG = 'vrun-pod';
const AGENT_SERVING = /vrun-agent: serving on .* port vrun\.agent/;
const BOOT_TIMEOUT_MS = Number(process.env.VRUN_BOOT_TIMEOUT_MS ?? 300_000);
const AGENT_TIMEOUT_MS = Number(process.env.VRUN_AGENT_TIMEOUT_MS ?? 300_000);

export class PodVm {
  private stopping = false;

  private constructor(
    private readonly vm: RunningVm,
    private readonly fsd: Virtiofsd,
    readonly agent: AgentClient,
    /** Where the guest sees the pod's shared directory. */
    readonly guestShare: string,
    readonly details: GuestDetails,
    readonly backend: string,
  ) {}

  get pids(): { vmm?: number; virtiofsd?: number } {
    return { vmm: this.vm.pid, virtiofsd: this.fsd.pid };
  }

  /** `onDeath` hears once if the VM or virtiofsd goes away while the pod is not being stopped. */
  static async boot(paths: PodPaths, cfg: PodVmConfig, log: Logger, onDeath: (reason: string) => void, onStarted: (pids: { vmm?: number; virtiofsd?: number }, backend: string) => Promise<void>): Promise<PodVm> {
    await mkdir(paths.shared, { recursive: true, mode: 0o711 });
    const decision = decideBackend(cfg.vmm, { nativeAvailable: false });
    if (decision.notice) log.warn(decision.notice);
    const guest = await loadGuestImage('guest-image');
    const fsd = await Virtiofsd.start({ socketPath: paths.fsSocket, sharedDir: paths.shared, logger: log });
    let vm: RunningVm;
    try {
      vm = launchQemu(
        decision,
        {
          kernel: guest.kernel,
          initrd: guest.initrd,
          cmdline: `${BASE_CMDLINE} quiet`,
          vcpus: cfg.vcpus,
          memoryMiB: cfg.memoryMiB,
          agentSocket: paths.agent,
          shares: [{ tag: SHARE_TAG, socketPath: fsd.socketPath }],
          consoleLog: paths.console,
          qmpSocket: paths.qmp,
        },
        log,
      );
    } catch (err) {
      await fsd.stop();
      throw err;
    }
    const holder: { pod?: PodVm; failed?: string } = {};
    const died = (reason: string) => {
      if (holder.pod?.stopping) return;
      holder.failed ??= reason;
      onDeath(reason);
    };
    void vm.exited.then((e) => died(`the pod's VM stopped: ${e.detail}${e.panic ? ' (guest kernel panic)' : ''}`));
    void fsd.exited.then((e) => died(`the pod's virtiofsd exited (${e.signal ?? `code ${e.code}`})`));
    await onStarted({ vmm: vm.pid, virtiofsd: fsd.pid }, vm.backend);
    let agent: AgentClient | undefined;
    try {
      // Bytes sent before the agent opened its port are lost (a lost HTTP/2 preface stalls the first
      // connection and the reconnects that follow trip over each other), so connect once it says it serves.
      const agentServing = vm.console.waitFor(AGENT_SERVING, BOOT_TIMEOUT_MS, 'the agent serving its port').then(
        () => true,
        () => false,
      );
      await vm.console.waitFor(READY_PATTERN, BOOT_TIMEOUT_MS, 'VRUN-READY');
      let timer: NodeJS.Timeout | undefined;
      const saidSo = await Promise.race([agentServing, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 60_000)))]);
      clearTimeout(timer);
      if (!saidSo) log.warn('the agent did not announce its port on the console; connecting anyway');
      agent = await connectAgent(paths.agent, () => holder.failed);
      const details = await agent.guestDetails();
      const guestShare = await agent.mountShare({ tag: SHARE_TAG, path: 'pod' });
      const pod = new PodVm(vm, fsd, agent, guestShare, details, vm.backend);
      holder.pod = pod;
      log.info({ kernel: details.kernelRelease, backend: vm.backend }, 'pod VM ready');
      return pod;
    } catch (err) {
      holder.pod = undefined;
      agent?.close();
      await vm.kill().catch(() => undefined);
      await fsd.stop().catch(() => undefined);
      throw new VrunError(`the pod's VM did not come up: ${holder.failed ?? errorMessage(err).split('\n')[0]}`);
    }
  }

  /** Asks the agent to stop everything, then makes sure the VMM and virtiofsd are gone. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await Promise.race([this.agent.shutdown().catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
    this.agent.close();
    await Promise.race([this.vm.exited, new Promise((r) => setTimeout(r, 1500))]);
    await this.vm.kill().catch(() => undefined);
    await this.fsd.stop().catch(() => undefined);
  }
}

/**
 * The console port accepts a connection before the agent inside opens it, and bytes written into a port
 * nobody has open are lost; so each attempt gets a deadline and a fresh connection. The guest notices a
 * host hang-up only by polling the port, so a quick reconnect would feed the new connection's bytes into
 * the old session: attempts get longer each time (TCG under load is slow to answer) and a pause between.
 */
async function connectAgent(socket: string, failed: () => string | undefined): Promise<AgentClient> {
  const deadline = Date.now() + AGENT_TIMEOUT_MS;
  let last = '';
  for (let attempt = 0; ; attempt++) {
    const why = failed();
    if (why) throw new VrunError(why);
    const perAttempt = Math.min(60_000, 10_000 * 2 ** attempt);
    const client = new AgentClient(socket, { callTimeoutMs: 60_000 });
    try {
      await client.waitForReady(Math.min(perAttempt, Math.max(1, deadline - Date.now())));
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([client.health(), new Promise((_, rej) => (timer = setTimeout(() => rej(new VrunError('health check timed out')), perAttempt)))]);
      clearTimeout(timer);
      return client;
    } catch (err) {
      client.close();
      last = errorMessage(err);
      if (Date.now() > deadline) throw new VrunError(`the guest agent did not answer within ${AGENT_TIMEOUT_MS} ms: ${last}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
