import type { DescriptorChain } from '../queue.js';

/** A transmit chain part of which has been read: `done` bytes, up to segment `seg`, offset `off`. */
export interface TxCursor {
  chain: DescriptorChain;
  seg: number;
  off: number;
  done: number;
}

export function txCursor(chain: DescriptorChain): TxCursor {
  return { chain, seg: 0, off: 0, done: 0 };
}

/** Copies the next `n` bytes of the chain's readable buffers out of guest RAM; `n` must not exceed what is left. */
export function copyOut(cur: TxCursor, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let at = 0;
  while (at < n) {
    const seg = cur.chain.readable[cur.seg];
    if (!seg) break;
    const k = seg.copy(out, at, cur.off, Math.min(seg.length, cur.off + n - at));
    at += k;
    cur.off += k;
    cur.done += k;
    if (cur.off >= seg.length) {
      cur.seg++;
      cur.off = 0;
    }
  }
  return at === n ? out : out.subarray(0, at);
}
