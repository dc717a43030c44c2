import type { Virtqueue } from '../queue.js';
import { MAX_GSO_FRAME, txHeaderProblem, VNET_HDR_LEN, type HeaderRules } from './net-hdr.js';
import type { TapIo } from './net-tap.js';
import type { NetStats } from './net-stats.js';

/**
 * The guest's transmit chains to the tap. Each chain is a header and one frame; it is copied into one reused
 * buffer (the tap takes a frame per write) and checked there, so the guest cannot change what was checked
 * before it is written. A chain larger than any valid frame is dropped without being copied. Every chain is
 * completed whatever becomes of its frame: the guest frees the buffers, and a drop is counted.
 */

/** The most a transmit chain may carry: a header and a 64 KiB GSO frame. */
export const MAX_TX_CHAIN = VNET_HDR_LEN + MAX_GSO_FRAME;

export type TxOutcome = 'done' | 'budget' | { broken: string };

export class NetTx {
  private readonly buf = Buffer.alloc(MAX_TX_CHAIN);

  constructor(
    private readonly tap: TapIo,
    private readonly stats: NetStats,
  ) {}

  pass(q: Virtqueue, rules: HeaderRules, maxChains: number): TxOutcome {
    for (let n = 0; n < maxChains; n++) {
      const chain = q.pop();
      if (!chain) return q.error ? { broken: q.error.message } : 'done';
      if (chain.writable.length > 0) return { broken: `transmit chain ${chain.head} has device-writable buffers` };
      if (chain.readableBytes > MAX_TX_CHAIN) this.stats.txOversized++;
      else this.send(chain.readable, chain.readableBytes, rules);
      q.pushUsed(chain, 0);
    }
    return 'budget';
  }

  private send(segs: Buffer[], len: number, rules: HeaderRules): void {
    let at = 0;
    for (const s of segs) at += s.copy(this.buf, at);
    if (txHeaderProblem(this.buf, len, rules)) {
      this.stats.txInvalid++;
      return;
    }
    const n = this.tap.write(this.buf, len);
    if (n !== len) {
      this.stats.txErrors++;
      return;
    }
    this.stats.txFrames++;
    this.stats.txBytes += len - VNET_HDR_LEN;
  }
}
