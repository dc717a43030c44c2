import type { DescriptorChain, Virtqueue } from '../queue.js';
import { finishRxHeader, MAX_GSO_FRAME, rxHeaderProblem, VNET_HDR_LEN, type HeaderRules } from './net-hdr.js';
import { EAGAIN, type TapIo } from './net-tap.js';
import type { NetStats } from './net-stats.js';

/**
 * Frames from the tap into the guest's receive chains. Without VIRTIO_NET_F_MRG_RXBUF each frame goes whole
 * into one chain (num_buffers = 1), so a chain is taken before a frame is read and kept across passes until
 * one comes. With no chain to take, nothing is read: the frames wait in the tap's queue (the kernel drops past
 * its length) and the device tells the caller to stop watching the tap until the guest posts buffers.
 */

export type RxOutcome = 'starved' | 'drained' | 'budget' | 'tap-failed' | { broken: string };

export class NetRx {
  private chain: DescriptorChain | undefined;
  /** One byte more than the largest frame allowed, so a frame that fills it is known to be too large. */
  private readonly buf = Buffer.alloc(VNET_HDR_LEN + MAX_GSO_FRAME + 1);

  constructor(
    private readonly tap: TapIo,
    private readonly stats: NetStats,
  ) {}

  pass(q: Virtqueue, rules: HeaderRules, maxFrames: number): RxOutcome {
    for (let n = 0; n < maxFrames; n++) {
      if (!this.chain) {
        const chain = q.pop();
        if (!chain) return q.error ? { broken: q.error.message } : 'starved';
        if (chain.readable.length > 0) return { broken: `receive chain ${chain.head} has device-readable buffers` };
        this.chain = chain;
      }
      const len = this.tap.read(this.buf);
      if (len === -EAGAIN) return 'drained';
      if (len < 0) {
        this.stats.rxErrors++;
        return 'tap-failed';
      }
      const problem = rxHeaderProblem(this.buf, len, rules);
      if (problem) {
        this.stats.rxInvalid++;
        continue;
      }
      this.deliver(q, this.chain, len, rules.features);
      this.chain = undefined;
      if (q.error) return { broken: q.error.message };
    }
    return 'budget';
  }

  /**
   * A chain too small for the frame gets the frame dropped and is handed back empty, as Firecracker does: kept
   * for the next frame instead (QEMU), a guest that posted one small chain would receive nothing ever again.
   * Linux counts a used length below a header as a length error and posts a new buffer.
   */
  private deliver(q: Virtqueue, chain: DescriptorChain, len: number, features: bigint): void {
    if (len > chain.writableBytes) {
      this.stats.rxTooSmall++;
      q.pushUsed(chain, 0);
      return;
    }
    finishRxHeader(this.buf, features);
    let at = 0;
    for (const dst of chain.writable) {
      if (at >= len) break;
      at += this.buf.copy(dst, 0, at, len);
    }
    q.pushUsed(chain, len);
    this.stats.rxFrames++;
    this.stats.rxBytes += len - VNET_HDR_LEN;
  }

  /** The queues are gone (reset, failure): a chain held from them must never be used. */
  abandon(): void {
    this.chain = undefined;
  }

  get holdsChain(): boolean {
    return this.chain !== undefined;
  }
}
