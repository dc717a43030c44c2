import type { DescriptorChain, Virtqueue } from '../queue.js';
import { finishRxHeader, MAX_GSO_FRAME, MIN_RX_BUFFER, rxHeaderProblem, VIRTIO_NET_F_MRG_RXBUF, VNET_HDR_LEN, type HeaderRules } from './net-hdr.js';
import { EAGAIN, type TapIo } from './net-tap.js';
import type { NetStats } from './net-stats.js';

/**
 * Frames from the tap into the guest's receive chains. A chain is taken before a frame is read, so with no
 * chain nothing is read: the frames wait in the tap's queue (the kernel drops past its length) and the device
 * tells the caller to stop watching the tap until the guest posts buffers. Without VIRTIO_NET_F_MRG_RXBUF each
 * frame goes whole into one chain (num_buffers = 1). With it, a frame fills as many chains as it needs
 * (num_buffers says how many): Linux then posts single small buffers instead of a 17-page chain per frame
 * ("big packets"), which costs the guest a page allocation per page and the device a descriptor walk per page.
 * A frame whose chains are not all there yet is kept, with the chains it has, until the guest posts more.
 */

export type RxOutcome = 'starved' | 'drained' | 'budget' | 'tap-failed' | { broken: string };

export class NetRx {
  /** Chains taken for the frame in `buf` (or for the next frame, when `len` is 0). */
  private chains: DescriptorChain[] = [];
  private room = 0;
  /** Bytes of the frame waiting in `buf` for more chains; 0 when none waits. */
  private len = 0;
  /** One byte more than the largest frame allowed, so a frame that fills it is known to be too large. */
  private readonly buf = Buffer.alloc(VNET_HDR_LEN + MAX_GSO_FRAME + 1);

  constructor(
    private readonly tap: TapIo,
    private readonly stats: NetStats,
  ) {}

  pass(q: Virtqueue, rules: HeaderRules, maxFrames: number): RxOutcome {
    const mergeable = (rules.features & (1n << VIRTIO_NET_F_MRG_RXBUF)) !== 0n;
    for (let n = 0; n < maxFrames; n++) {
      // At least one chain before a read; with mergeable buffers, as many as the waiting frame needs.
      while (this.chains.length === 0 || (this.len > 0 && this.room < this.len)) {
        const chain = q.pop();
        if (!chain) return q.error ? { broken: q.error.message } : 'starved';
        if (chain.readable.length > 0) return { broken: `receive chain ${chain.head} has device-readable buffers` };
        if (mergeable && chain.writableBytes < MIN_RX_BUFFER) {
          // Too small to start a frame in (Linux counts it as a length error): handed back empty.
          this.stats.rxTooSmall++;
          q.pushUsed(chain, 0);
          continue;
        }
        this.chains.push(chain);
        this.room += chain.writableBytes;
        // A guest whose whole ring cannot hold the frame would wait for ever: the frame goes instead.
        if (this.len > 0 && this.room < this.len && this.chains.length >= q.size) {
          this.stats.rxTooSmall++;
          this.dropWaiting(q);
        }
        if (q.error) return { broken: q.error.message };
      }
      if (this.len === 0) {
        const len = this.tap.read(this.buf);
        if (len === -EAGAIN) return 'drained';
        if (len < 0) {
          this.stats.rxErrors++;
          return 'tap-failed';
        }
        if (rxHeaderProblem(this.buf, len, rules)) {
          this.stats.rxInvalid++;
          continue;
        }
        this.len = len;
        if (mergeable && this.room < len) continue;
      }
      this.deliver(q, mergeable, rules.features);
      if (q.error) return { broken: q.error.message };
    }
    return 'budget';
  }

  /**
   * Without mergeable buffers, a chain too small for the frame gets the frame dropped and is handed back empty,
   * as Firecracker does: kept for the next frame instead (QEMU), a guest that posted one small chain would
   * receive nothing ever again. Linux counts a used length below a header as a length error and posts a new
   * buffer.
   */
  private deliver(q: Virtqueue, mergeable: boolean, features: bigint): void {
    const len = this.len;
    if (len > this.room) {
      this.stats.rxTooSmall++;
      this.dropWaiting(q);
      return;
    }
    let used = 1;
    if (mergeable) for (let room = this.chains[0]!.writableBytes; room < len; room += this.chains[used++]!.writableBytes);
    finishRxHeader(this.buf, features, used);
    let at = 0;
    for (let i = 0; i < used; i++) {
      const chain = this.chains[i]!;
      const start = at;
      for (const dst of chain.writable) {
        if (at >= len) break;
        at += this.buf.copy(dst, 0, at, len);
      }
      q.pushUsed(chain, at - start);
    }
    this.chains.splice(0, used);
    this.room = this.chains.reduce((s, c) => s + c.writableBytes, 0);
    this.len = 0;
    this.stats.rxFrames++;
    this.stats.rxBytes += len - VNET_HDR_LEN;
  }

  /** The waiting frame is dropped; the chains taken for it go back empty. */
  private dropWaiting(q: Virtqueue): void {
    for (const c of this.chains) q.pushUsed(c, 0);
    this.chains = [];
    this.room = 0;
    this.len = 0;
  }

  /** The queues are gone (reset, failure): chains held from them must never be used. */
  abandon(): void {
    this.chains = [];
    this.room = 0;
    this.len = 0;
  }

  get holdsChain(): boolean {
    return this.chains.length > 0;
  }
}
