import { VrunError, errorMessage } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import type { ActivateContext, VirtioDevice } from '../mmio.js';
import type { Virtqueue } from '../queue.js';
import {
  VIRTIO_NET_F_CSUM,
  VIRTIO_NET_F_GUEST_CSUM,
  VIRTIO_NET_F_GUEST_TSO4,
  VIRTIO_NET_F_GUEST_TSO6,
  VIRTIO_NET_F_HOST_TSO4,
  VIRTIO_NET_F_HOST_TSO6,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_F_STATUS,
  type HeaderRules,
} from './net-hdr.js';
import { NetRx } from './net-rx.js';
import { emptyNetStats, type NetStats } from './net-stats.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, type TapIo } from './net-tap.js';
import { NetTx } from './net-tx.js';

/**
 * virtio-net (device id 1) on a tap: one receive queue (0) and one transmit queue (1), no control queue, no
 * multiqueue, mergeable receive buffers (see net-rx.ts). Config space: mac, status (link up),
 * max_virtqueue_pairs (1), mtu. Offloads are offered only as far as the tap accepted them, and once negotiated the tap is told exactly what
 * the guest takes, so the tap never hands over a frame the guest cannot parse. The data paths are net-tx.ts
 * and net-rx.ts; this routes notifications and tap readiness to them, bounds each pass, and stops everything
 * when the guest breaks a queue.
 */

export const VIRTIO_ID_NET = 1;
export const VIRTIO_NET_S_LINK_UP = 1;
const QUEUE_SIZE = 256;
const RX = 0;
const TX = 1;
/** Frames or chains one pass may take before it yields to the event loop (vCPUs keep posting meanwhile). */
const PASS_FRAMES = 256;
const MIN_MTU = 68;
const MAX_MTU = 65_535;

export interface NetSpec {
  /** The guest NIC's MAC, "52:54:00:12:34:56": unicast, not all zeroes. */
  mac: string;
  /** The link's MTU (the tap's), offered with VIRTIO_NET_F_MTU; default 1500. */
  mtu?: number;
  /** Names the device in logs and queue errors. */
  name?: string;
}

const bit = (n: bigint) => 1n << n;

export function parseMac(mac: string): Buffer {
  if (!/^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac)) throw new VrunError(`MAC ${JSON.stringify(mac)} is not six hex bytes separated by colons`, { kind: 'invalid' });
  const b = Buffer.from(mac.replaceAll(':', ''), 'hex');
  if (b[0]! & 1 || b.every((x) => x === 0)) throw new VrunError(`MAC ${mac} is multicast or zero: a NIC needs a unicast address`, { kind: 'invalid' });
  return b;
}

/** What the tap may hand the guest, from the guest's features: TSO implies the checksum offload it needs. */
function guestOffloads(features: bigint): number {
  if (!(features & bit(VIRTIO_NET_F_GUEST_CSUM))) return 0;
  return TUN_F_CSUM | (features & bit(VIRTIO_NET_F_GUEST_TSO4) ? TUN_F_TSO4 : 0) | (features & bit(VIRTIO_NET_F_GUEST_TSO6) ? TUN_F_TSO6 : 0);
}

/** Offloads the tap took, as feature bits for both directions (the tap parses GSO headers on write whatever its offloads). */
function offeredOffloads(tun: number): bigint {
  if (!(tun & TUN_F_CSUM)) return 0n;
  let f = bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_GUEST_CSUM);
  if (tun & TUN_F_TSO4) f |= bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO4);
  if (tun & TUN_F_TSO6) f |= bit(VIRTIO_NET_F_HOST_TSO6) | bit(VIRTIO_NET_F_GUEST_TSO6);
  return f;
}

export class VirtioNet implements VirtioDevice {
  readonly name: string;
  readonly deviceId = VIRTIO_ID_NET;
  readonly features: bigint;
  readonly queueMaxSizes = [QUEUE_SIZE, QUEUE_SIZE];
  readonly configSize = 12;
  readonly stats: NetStats = emptyNetStats();
  readonly mtu: number;
  private readonly config = Buffer.alloc(12);
  private readonly rx: NetRx;
  private readonly tx: NetTx;
  private ctx: ActivateContext | undefined;
  private rules: HeaderRules;
  private watching = false;
  private tapFailed = false;
  private txLater = false;

  constructor(
    private readonly tap: TapIo,
    spec: NetSpec,
    private readonly logger?: Logger,
  ) {
    this.name = spec.name ?? 'net';
    const mtu = spec.mtu ?? 1500;
    if (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU) throw new VrunError(`MTU ${mtu} is not between ${MIN_MTU} and ${MAX_MTU}`, { kind: 'invalid' });
    this.mtu = mtu;
    parseMac(spec.mac).copy(this.config, 0);
    this.config.writeUInt16LE(VIRTIO_NET_S_LINK_UP, 6);
    this.config.writeUInt16LE(1, 8);
    this.config.writeUInt16LE(mtu, 10);
    this.features = bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_MTU) | bit(VIRTIO_NET_F_STATUS) | bit(VIRTIO_NET_F_MRG_RXBUF) | offeredOffloads(tap.offloads);
    this.rules = { features: 0n, mtu };
    this.rx = new NetRx(tap, this.stats);
    this.tx = new NetTx(tap, this.stats);
    tap.watch((status) => this.tapReadable(status));
  }

  readConfig(offset: number, size: number): number {
    return this.config.readUIntLE(offset, size);
  }

  writeConfig(): void {
    // The MAC is writable only with VIRTIO_NET_F_CTRL_MAC_ADDR (legacy drivers); nothing here is.
  }

  activate(ctx: ActivateContext): void {
    this.tap.setOffloads(guestOffloads(ctx.features));
    this.ctx = ctx;
    this.rules = { features: ctx.features, mtu: this.mtu };
    this.receive();
  }

  notify(index: number): void {
    if (index === RX) this.receive();
    else if (index === TX) this.transmit();
  }

  reset(): void {
    this.stop();
  }

  /** Releases the tap; the device takes no more frames. */
  close(): void {
    this.stop();
    this.tap.close();
  }

  debugState(): Record<string, unknown> {
    return { ...this.stats, watchingTap: this.watching, rxChainHeld: this.rx.holdsChain, tapFailed: this.tapFailed };
  }

  private receive(): void {
    const q = this.ctx?.queues[RX];
    if (!q || this.tapFailed) return;
    this.stats.rxPasses++;
    const out = this.rx.pass(q, this.rules, PASS_FRAMES);
    if (typeof out === 'object') return this.broke(out.broken);
    if (out === 'tap-failed') this.tapDown('a read from the tap failed');
    // Level-triggered: with frames left over ('budget') the watch calls again on the next loop turn.
    else this.watch(out !== 'starved');
    this.finish(q);
  }

  private transmit(): void {
    const q = this.ctx?.queues[TX];
    if (!q) return;
    this.stats.txPasses++;
    const out = this.tx.pass(q, this.rules, PASS_FRAMES);
    if (typeof out === 'object') return this.broke(out.broken);
    if (out === 'budget' && !this.txLater) {
      this.txLater = true;
      const ctx = this.ctx;
      setImmediate(() => {
        this.txLater = false;
        if (this.ctx === ctx) this.transmit();
      });
    }
    this.finish(q);
  }

  /** Called from the libuv poll: nothing may escape it, or it becomes the process's uncaught exception. */
  private tapReadable(status: number): void {
    try {
      if (status < 0) this.tapDown(`the tap's poll failed (${status})`);
      else if (this.ctx) this.receive();
      else this.watch(false);
    } catch (err) {
      this.broke(`receive failed: ${errorMessage(err)}`);
    }
  }

  private watch(on: boolean): void {
    if (on === this.watching) return;
    this.watching = on;
    if (!on) this.tap.pause();
    else if (!this.tap.resume()) this.tapDown('the tap can no longer be watched');
  }

  /** The link stays up for the guest (its sends are counted as tap errors); it only stops hearing. */
  private tapDown(why: string): void {
    if (this.tapFailed) return;
    this.tapFailed = true;
    this.watch(false);
    this.logger?.warn({ device: this.name, err: why }, 'virtio-net tap failed');
  }

  private finish(q: Virtqueue): void {
    if (!this.ctx) return;
    if (q.error) this.broke(q.error.message);
    else if (q.needsInterrupt()) {
      this.stats.interrupts++;
      this.ctx.signalUsed();
    }
  }

  /** The guest broke a queue: nothing touches the rings again until the driver resets the device. */
  private broke(message: string): void {
    const ctx = this.ctx;
    this.stop();
    ctx?.fail(message);
  }

  private stop(): void {
    this.ctx = undefined;
    this.rx.abandon();
    this.watch(false);
  }
}
