/**
 * The shim's pod: its VM and shared directory, and the pod's lifecycle. The VM boots with the first Create;
 * containerd may ask the shim to shut down while a container still exists (during a Create that then fails),
 * and the pod is stopped when the last one goes; a VM that dies on its own loses the pod for good.
 */
import type { AgentClient } from '../agent/host/client.js';
import { VrunError, errorMessage } from '../common/errors.js';
import { accepts, transition, type Lifecycle } from '../common/lifecycle.js';
import type { Logger } from '../common/log.js';
import { GuestShare } from '../sandbox/guest-share.js';
import { PodVm, type PodVmPids } from '../sandbox/pod-vm.js';
import { Code, TtrpcError } from '../ttrpc/status.js';
import type { PodPaths } from './pod-paths.js';
import { PodNetwork } from './pod-network.js';
import type { PodVmConfig } from './runtime-options.js';

/** The virtio-fs tag of the pod's shared directory, which holds every container's rootfs and bind mounts. */
const SHARE_TAG = 'vrun-pod';

/** The pod's VM and where the guest sees the pod's shared directory. */
export interface Pod {
  vm: Pick<PodVm, 'agent' | 'stop'>;
  guestShare: string;
}

export type PodState =
  /** No VM asked for yet. */
  | { readonly status: 'idle' }
  /** The VM boots, or runs. */
  | { readonly status: 'up' }
  /** containerd asked to shut down while containers remained: the pod stops when the last one goes. */
  | { readonly status: 'draining' }
  | { readonly status: 'lost'; readonly reason: string; readonly draining: boolean }
  | { readonly status: 'stopping' };

export type PodEvent = { readonly type: 'boot' } | { readonly type: 'drain' } | { readonly type: 'death'; readonly reason: string } | { readonly type: 'stop' };

const stopping = (): PodState => ({ status: 'stopping' });

export const podLifecycle: Lifecycle<PodState, PodEvent> = {
  name: 'pod',
  edges: {
    idle: { boot: () => ({ status: 'up' }), stop: stopping },
    up: { drain: () => ({ status: 'draining' }), death: (_, e) => ({ status: 'lost', reason: e.reason, draining: false }), stop: stopping },
    draining: { drain: (s) => s, death: (_, e) => ({ status: 'lost', reason: e.reason, draining: true }), stop: stopping },
    lost: { drain: (s) => ({ ...s, draining: true }), stop: stopping },
    // Already going away: there is nothing left to wait for.
    stopping: { drain: (s) => s },
  },
};

export interface PodHooks {
  /** The VM died on its own: every process in it is gone. */
  onLost(reason: string): void;
  onStarted(pids: PodVmPids, backend: string): Promise<void>;
}

export class ShimPod {
  state: PodState = { status: 'idle' };
  private vm: Promise<Pod> | undefined;
  private share: Promise<GuestShare> | undefined;
  private network: PodNetwork | undefined;

  constructor(
    protected readonly paths: PodPaths,
    protected readonly log: Logger,
    private readonly hooks: PodHooks,
  ) {}

  private step(event: PodEvent): void {
    this.state = transition(podLifecycle, this.state, event);
  }

  /**
   * The pod's VM: the first call (the first Create) boots it and mounts the pod's shared directory in the guest.
   * `netns` is a CRI pod's network namespace (from the sandbox's spec), whose interfaces the VM gets.
   */
  boot(cfg: PodVmConfig, netns?: string): Promise<Pod> {
    if (!this.vm) {
      this.step({ type: 'boot' });
      this.vm = this.shareDir().then((share) => this.launch(cfg, share, netns));
      this.vm.catch(() => undefined);
    }
    return this.vm;
  }

  /** The pod's shared directory (a host-only tree: see GuestShare). */
  shareDir(): Promise<GuestShare> {
    return (this.share ??= this.createShare());
  }

  protected createShare(): Promise<GuestShare> {
    return GuestShare.create(this.paths.dir);
  }

  protected async launch(cfg: PodVmConfig, share: GuestShare, netns?: string): Promise<Pod> {
    // Outside the VM's try: a network that cannot be attached fails the pod with its own error (and kind).
    const network = netns ? (this.network = await PodNetwork.attach(netns, this.paths.network, this.log)) : undefined;
    let vm: PodVm | undefined;
    try {
      vm = await PodVm.boot(
        {
          vmm: cfg.vmm,
          vcpus: cfg.vcpus,
          memoryMiB: cfg.memoryMiB,
          shares: [{ tag: SHARE_TAG, dir: share.servedDir, what: "pod's shared directory", idmap: share.idmap, unmapped: share.unmapped }],
          nets: network?.vmNets,
          paths: { runDir: this.paths.runDir, agent: this.paths.agent, console: this.paths.console, fsSocket: () => this.paths.fsSocket },
        },
        this.log,
        { onDeath: (reason) => this.died(reason), onLaunched: (launched) => this.hooks.onStarted(launched.pids, launched.backend) },
      );
      await network?.configureGuest(vm.agent);
      return { vm, guestShare: await vm.agent.mountShare({ tag: SHARE_TAG, path: 'pod' }) };
    } catch (err) {
      await vm?.stop({ graceful: false });
      await this.network?.release();
      throw new VrunError(`the pod's VM did not come up: ${errorMessage(err).split('\n')[0]}`, { kind: 'unavailable' });
    }
  }

  async agent(): Promise<AgentClient> {
    if (this.state.status === 'lost') throw new TtrpcError(Code.UNAVAILABLE, this.state.reason);
    if (!this.vm) throw new TtrpcError(Code.FAILED_PRECONDITION, 'the pod has no VM yet');
    return (await this.vm).vm.agent;
  }

  /** Lost, or being stopped: nothing in the guest will answer any more. */
  gone(): boolean {
    return this.state.status === 'lost' || this.state.status === 'stopping';
  }

  /** Whether containerd asked to shut down while containers remained. */
  draining(): boolean {
    return this.state.status === 'draining' || (this.state.status === 'lost' && this.state.draining);
  }

  drain(): void {
    this.step({ type: 'drain' });
  }

  protected died(reason: string): void {
    // A VM being stopped dies as asked; a lost one cannot die twice.
    if (!accepts(podLifecycle, this.state, 'death')) return;
    this.step({ type: 'death', reason });
    this.log.error({ reason }, 'pod VM lost');
    this.hooks.onLost(reason);
  }

  /** The container's mounts and mount points in the pod's share. */
  async removeContainerDir(id: string): Promise<void> {
    const share = await this.share?.catch(() => undefined);
    await share?.remove(id).catch((err: unknown) => this.log.warn({ err: errorMessage(err), id }, 'removing the container from the pod share failed'));
  }

  /** Stops the VM and every mount. False when a stop was already under way. */
  async stop(): Promise<boolean> {
    if (this.state.status === 'stopping') return false;
    this.step({ type: 'stop' });
    const booted = await this.vm?.catch(() => undefined);
    await booted?.vm.stop({ graceful: true });
    await this.network?.release();
    const share = await this.share?.catch(() => undefined);
    await share?.destroy().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'taking the pod share down failed'));
    return true;
  }
}
