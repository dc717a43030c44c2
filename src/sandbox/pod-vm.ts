import { mkdir } from 'node:fs/promises';
import type { AgentClient, GuestDetails } from '../agent/host/client.js';
import { VrunError, errorMessage } from '../common/errors.js';
import { accepts, transition } from '../common/lifecycle.js';
import type { Logger } from '../common/log.js';
import { BASE_CMDLINE, READY_PATTERN } from '../guest-image/guest-contract.js';
import { loadGuestImage } from '../guest-image/image.js';
import { bootFiles } from '../guest-image/boot-files.js';
import { chooseBackend, type RunningVm, type VmEnd, type VmLaunch, type VmmChoice, type VmNet } from '../vmm/backend.js';
import { launchQemu } from '../vmm/qemu/backend.js';
import type { IdMap } from '../vmm/jail/idmap.js';
import { Virtiofsd } from '../vmm/vhost-user/virtiofsd.js';
import { podVmLifecycle, type AgentConnection, type PodVmEvent, type PodVmState } from './pod-vm-state.js';

/**
 * One pod's VM, the lifecycle the CLI's sandbox (one container) and the containerd shim (every container of
 * a pod) share: a virtiofsd per shared host directory, the VMM, and the connection to the guest agent. The
 * callers prepare what the shares hold and create containers through `agent`.
 */
export interface PodVmSpec {
  vmm: VmmChoice;
  vcpus: number;
  memoryMiB: number;
  /** Appended to the kernel command line (e.g. `vrun.hostname=...`). */
  cmdlineExtra?: string;
  /**
   * Host directories served to the guest under their virtio-fs tags; `what` names one in error messages.
   * `idmap`: the mapping the directory is already mounted id-mapped with (a GuestShare's); `unmapped`: why
   * it is mounted without one; with neither, its virtiofsd id-maps it (see Virtiofsd.start).
   */
  shares: { tag: string; dir: string; what: string; idmap?: IdMap; unmapped?: string }[];
  /** The pod's NICs (taps next to its CNI interfaces, src/network/pod-nics.ts); none for a pod with only loopback. */
  nets?: VmNet[];
  /**
   * `runDir` holds the sockets the VMM uses (the agent's, every virtiofsd's): the only host directory its jail
   * sees besides the boot files.
   */
  paths: { runDir: string; agent: string; console: string; fsSocket: (index: number) => string };
}

export type BootPhase = 'vmmStart' | 'guestBoot' | 'agentReady';

export interface PodVmHooks {
  /**
   * Heard at most once, when the VM or a virtiofsd goes away (or a caller reports a loss) while the pod is
   * not being stopped. The VM's own reason wins over what its going away causes.
   */
  onDeath(reason: string): void;
  /** The processes run (the guest has not booted yet): record their pids so a crash can be cleaned up. */
  onLaunched?(pod: PodVm): Promise<void>;
  /** A boot phase ended; `startedAt` is its performance.now() start. */
  onPhase?(phase: BootPhase, startedAt: number): void;
}

export interface PodVmPids {
  vmm?: number;
  virtiofsd: number[];
}

const BOOT_TIMEOUT_MS = Number(process.env.VRUN_BOOT_TIMEOUT_MS ?? 300_000);
const AGENT_TIMEOUT_MS = Number(process.env.VRUN_AGENT_TIMEOUT_MS ?? 300_000);
/**
 * How long after the init's readiness line the agent may take to announce its port before we try anyway (the
 * line could be garbled by other console output). Node's start-up in a TCG guest on a loaded host took 54 s.
 */
const SERVING_GRACE_MS = 120_000;
const AGENT_SERVING = /vrun-agent: serving on .* port vrun\.agent/;
/** A virtiofsd's exit or a lost call waits this long for the VM's exit, whose reason is then the real one. */
const VM_EXIT_GRACE_MS = 500;

function within<T>(p: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((r) => (timer = setTimeout(() => r(onTimeout()), ms)))]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ms = (v: number) => Math.round(v * 10) / 10;

/** The guest's init runs the agent, so a status it reported is the agent's. */
function describeEnd(e: VmEnd): string {
  if (e.kind === 'exit') return `the guest agent exited with status ${e.guestStatus}`;
  return `${e.message}${e.kind !== 'panic' && e.guestStatus !== undefined ? ` (the guest agent exited with status ${e.guestStatus})` : ''}`;
}

/** Starts loading gRPC, the agent client and its parsed proto; boot() picks when (see there). */
function loadAgentModules(): Promise<typeof AgentClient> {
  const client = import('../agent/host/client.js').then((m) => m.AgentClient);
  client.catch(() => undefined);
  void import('../agent/protocol/proto.js').then((m) => m.loadAgentProto()).catch(() => undefined);
  return client;
}

export class PodVm {
  private state: PodVmState = { status: 'booting' };
  /** Settles when the processes are stopped; every stop() after the first waits for the same one. */
  private stopped: Promise<void> | undefined;
  /** Both console waiters exist from the launch on: the two lines can arrive in one read. */
  private readonly booted: Promise<unknown>;
  private readonly serving: Promise<boolean>;

  private constructor(
    private readonly vm: RunningVm,
    private readonly fsds: { what: string; d: Virtiofsd }[],
    private readonly spec: PodVmSpec,
    private readonly log: Logger,
    private readonly onDeath: (reason: string) => void,
  ) {
    this.booted = vm.console.waitFor(READY_PATTERN, BOOT_TIMEOUT_MS, 'VRUN-READY');
    this.booted.catch(() => undefined);
    this.serving = vm.console.waitFor(AGENT_SERVING, BOOT_TIMEOUT_MS, 'the agent serving its port').then(
      () => true,
      () => false,
    );
    void vm.exited.then((e) => this.died(`the VM stopped unexpectedly: ${describeEnd(e)}`, true));
    for (const f of fsds) void f.d.exited.then((e) => this.died(`virtiofsd for the ${f.what} exited (${e.signal ? `killed by ${e.signal}` : `code ${e.code}`})`, false));
  }

  /**
   * Starts virtiofsd and the VMM, waits for the guest's init and then for its agent, and returns the pod
   * with a connected agent. On failure everything started is stopped and the error names the first cause.
   */
  static async boot(spec: PodVmSpec, log: Logger, hooks: PodVmHooks): Promise<PodVm> {
    const t = performance.now();
    const decision = chooseBackend(spec.vmm);
    if (decision.notice) log.info({ notice: decision.notice }, 'backend chosen');
    // The native VMM's modules load only when it runs (the QEMU path does not pay for them), and while the
    // image is checked and virtiofsd starts.
    const nativeModule = decision.backend === 'native' ? import('../vmm/native-backend.js') : undefined;
    nativeModule?.catch(() => undefined);
    // gRPC and the agent's proto take a while to load, and module evaluation blocks the event loop: they load
    // after the launch, while the guest boots (first, they held the VMM's start back by about 130 ms). Both
    // VMMs are processes of their own, so nothing of the guest's runs on this loop.
    let agentModule: ReturnType<typeof loadAgentModules> | undefined;
    const image = await loadGuestImage('guest-image');
    await mkdir(spec.paths.runDir, { recursive: true, mode: 0o700 });
    const tFsd = performance.now();
    const started = await Promise.allSettled(spec.shares.map((s, i) => Virtiofsd.start({ socketPath: spec.paths.fsSocket(i), sharedDir: s.dir, idmap: s.idmap, unmapped: s.unmapped, logger: log })));
    const fsds = started.flatMap((r, i) => (r.status === 'fulfilled' ? [{ what: spec.shares[i]?.what ?? 'share', d: r.value }] : []));
    const firstFailure = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    let vm: RunningVm;
    const tVmm = performance.now();
    try {
      if (firstFailure) throw firstFailure.reason instanceof Error ? firstFailure.reason : new VrunError(String(firstFailure.reason));
      const launch: VmLaunch = {
        kernel: image.kernel,
        ...bootFiles(image, decision.backend),
        cmdline: `${BASE_CMDLINE} quiet${spec.cmdlineExtra ? ` ${spec.cmdlineExtra}` : ''}`,
        vcpus: spec.vcpus,
        memoryMiB: spec.memoryMiB,
        agentSocket: spec.paths.agent,
        shares: fsds.map((f, i) => ({ tag: spec.shares[i]?.tag ?? '', socketPath: f.d.socketPath })),
        consoleLog: spec.paths.console,
        runDir: spec.paths.runDir,
        nets: spec.nets,
      };
      vm = nativeModule ? await (await nativeModule).launchNative(decision, launch, log) : launchQemu(decision, launch, log);
    } catch (err) {
      await Promise.all(fsds.map((f) => f.d.stop().catch(() => undefined)));
      throw err;
    }
    // Where the VMM start phase goes (image check, virtiofsd, the VMM itself): the native VMM's start is
    // much of a boot in the KVM lab.
    log.info({ backend: vm.backend, imageMs: ms(tFsd - t), virtiofsdMs: ms(tVmm - tFsd), launchMs: ms(performance.now() - tVmm) }, 'VMM launched');
    const pod = new PodVm(vm, fsds, spec, log, hooks.onDeath);
    try {
      await hooks.onLaunched?.(pod);
      hooks.onPhase?.('vmmStart', t);
      agentModule ??= loadAgentModules();
      await pod.untilAgentReady(agentModule, hooks.onPhase);
      log.info({ kernel: pod.details.kernelRelease, backend: pod.backend }, 'pod VM ready');
      return pod;
    } catch (err) {
      // A console that closed early is the VM going away: its own reason is the one to give.
      await within(vm.exited.then(() => true), VM_EXIT_GRACE_MS, () => false);
      if (!pod.failure) await pod.logVmmState('the guest did not come up');
      const why = pod.failure ?? errorMessage(err).split('\n')[0] ?? 'the VM did not come up';
      await pod.stop({ graceful: false });
      throw new VrunError(why);
    }
  }

  /** The agent of a ready pod; a pod that died or is being stopped has none to offer. */
  get agent(): AgentClient {
    return this.connection().agent;
  }

  get details(): GuestDetails {
    return this.connection().details;
  }

  private connection(): AgentConnection {
    const s = this.state;
    if (s.status === 'ready') return s.conn;
    if (s.status === 'dead') throw new VrunError(s.reason, { kind: 'unavailable' });
    if (s.status === 'stopping') throw new VrunError('the pod VM is being stopped', { kind: 'unavailable' });
    throw new VrunError('the guest agent is not connected yet');
  }

  private step(event: PodVmEvent): PodVmState {
    return (this.state = transition(podVmLifecycle, this.state, event));
  }

  get backend(): string {
    return this.vm.backend;
  }

  get pids(): PodVmPids {
    return { vmm: this.vm.pid, virtiofsd: this.fsds.map((f) => f.d.pid).filter((p): p is number => p !== undefined) };
  }

  /** Neither dead nor being stopped: its guest can still be asked where it stands. */
  get up(): boolean {
    return this.state.status === 'booting' || this.state.status === 'ready';
  }

  /** Why the pod died, once it has. */
  get failure(): string | undefined {
    return this.state.status === 'dead' ? this.state.reason : undefined;
  }

  private async untilAgentReady(clientClass: Promise<typeof AgentClient>, onPhase: PodVmHooks['onPhase']): Promise<void> {
    let t = performance.now();
    await this.booted;
    const Client = await clientClass;
    onPhase?.('guestBoot', t);
    t = performance.now();
    // Bytes sent before the agent opened its port are lost (a lost HTTP/2 preface stalls the connection and
    // quick reconnects trip over each other), so the first connection waits for the agent to say it serves.
    if (!(await within(this.serving, SERVING_GRACE_MS, () => false)) && this.state.status !== 'dead') {
      this.log.warn('the agent did not announce its port on the console; connecting anyway');
    }
    const announced = performance.now();
    const conn = await this.connectAgent(Client);
    // A death or a stop while the last attempt was answered wins: the connection is not the pod's.
    const s = this.step({ type: 'connected', conn });
    if (s.status !== 'ready') {
      conn.agent.close();
      throw new VrunError(s.status === 'dead' ? s.reason : 'the pod is being stopped');
    }
    // Where agentReady goes: the agent's own start (until it announces its port), then the first connection and
    // its first call through the port.
    this.log.debug({ startMs: Math.round(announced - t), connectMs: Math.round(performance.now() - announced) }, 'agent reached');
    onPhase?.('agentReady', t);
  }

  /**
   * Bounded attempts, each on a fresh connection: a slow guest (TCG under load) gets a longer deadline each
   * time and a pause between, because the guest notices a host hang-up only by polling the port and a quick
   * reconnect would feed the new connection's bytes into the old session. The first call is GuestDetails,
   * which the pod needs anyway: under TCG each round trip through the guest costs 100-200 ms.
   */
  private async connectAgent(Client: typeof AgentClient): Promise<AgentConnection> {
    const deadline = Date.now() + AGENT_TIMEOUT_MS;
    let last = '';
    for (let attempt = 0; ; attempt++) {
      if (this.state.status === 'dead') throw new VrunError(this.state.reason);
      if (this.state.status === 'stopping') throw new VrunError('the pod is being stopped');
      const perAttempt = Math.max(1, Math.min(60_000, 10_000 * 2 ** attempt, deadline - Date.now()));
      const client = new Client(this.spec.paths.agent, { callTimeoutMs: 60_000 });
      try {
        const vmGone = this.vm.exited.then(() => {
          throw new VrunError(this.failure ?? 'the VM stopped while the agent was being reached');
        });
        vmGone.catch(() => undefined);
        await Promise.race([client.waitForReady(perAttempt), vmGone]);
        const asked = client.guestDetails();
        asked.catch(() => undefined);
        const details = await within(asked, perAttempt, () => null);
        if (!details) throw new VrunError(`the agent did not answer GuestDetails within ${perAttempt} ms`);
        return { agent: client, details };
      } catch (err) {
        client.close();
        last = errorMessage(err);
        if (Date.now() >= deadline) throw new VrunError(`the guest agent did not answer within ${AGENT_TIMEOUT_MS} ms: ${last}`);
        this.log.debug({ attempt, err: last }, 'agent connection attempt failed');
        await sleep(1000);
      }
    }
  }

  private died(reason: string, isVm: boolean): void {
    // A pod being stopped goes away as asked; a dead one cannot die twice.
    if (!accepts(podVmLifecycle, this.state, 'death')) return;
    if (!isVm) {
      void this.reportLoss(reason);
      return;
    }
    this.step({ type: 'death', reason });
    this.log.error({ reason }, 'pod VM lost');
    this.onDeath(reason);
  }

  /**
   * Logs the VMM's view of the guest (vCPUs, devices, console ports; see RunningVm.diagnose), for a guest that
   * stopped making progress. False when the backend gives none.
   */
  async logVmmState(why: string): Promise<boolean> {
    if (!this.vm.diagnose) return false;
    const state = await this.vm.diagnose().catch((err: unknown) => ({ error: errorMessage(err) }));
    this.log.warn({ vmm: state }, `${why}; where the VMM saw it`);
    return true;
  }

  /**
   * Something that depends on the VM broke (a virtiofsd, a lost agent call): that counts as the pod's death
   * unless the VM itself goes away within a moment, whose reason is then the real one.
   */
  async reportLoss(reason: string): Promise<void> {
    if (!accepts(podVmLifecycle, this.state, 'death')) return;
    const vmGone = await within(this.vm.exited.then(() => true), VM_EXIT_GRACE_MS, () => false);
    if (vmGone || !accepts(podVmLifecycle, this.state, 'death')) return;
    this.step({ type: 'death', reason });
    this.log.error({ reason }, 'pod lost');
    this.onDeath(reason);
  }

  /**
   * Stops the VMM and every virtiofsd; idempotent. `graceful` first asks the agent to stop its containers
   * (bounded); otherwise the plug is pulled, which is safe because virtio-fs writes reach the host as they
   * happen.
   */
  stop(opts: { graceful: boolean }): Promise<void> {
    this.stopped ??= (async () => {
      const from = this.state;
      const to = this.step({ type: 'stop' });
      const conn = 'conn' in to ? to.conn : undefined;
      // Only a guest that was up can shut its containers down; a dead one has nothing left to answer.
      if (opts.graceful && from.status === 'ready') {
        await within(from.conn.agent.shutdown().then(() => true, () => false), 2000, () => false);
        from.conn.agent.close();
        await within(this.vm.exited.then(() => true), 1500, () => false);
      }
      conn?.agent.close();
      await this.vm.kill().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'stopping the VMM failed'));
      await Promise.all(this.fsds.map((f) => f.d.stop().catch(() => undefined)));
    })();
    return this.stopped;
  }
}
