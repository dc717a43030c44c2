import { VrunError } from '../../common/errors.js';

/**
 * Guest RAM as the host sees it: one or more guest-physical ranges, each backed by a Buffer (the
 * shared memfd mapping, or plain memory in tests). Every guest address goes through `slice`, which
 * only hands out views lying wholly inside one range, so device code cannot reach host memory
 * whatever address and length the guest supplies.
 */

const fenceWord = new Int32Array(new SharedArrayBuffer(4));

/**
 * A full memory barrier between this thread's stores to guest RAM and its later loads. x86 lets a load
 * pass an earlier store to another address (the store waits in the store buffer), and the virtqueue's
 * notification handshakes are Dekker-style: each side stores its index, then reads the other's. Without
 * the barrier both sides can read the old value and each wait for the other for ever. A locked
 * read-modify-write drains the store buffer; Atomics on a SharedArrayBuffer is one that V8 cannot drop.
 */
export function memoryBarrier(): void {
  Atomics.add(fenceWord, 0, 0);
}

export interface GuestRamRange {
  guestAddr: number;
  buf: Buffer;
}

export class GuestMemory {
  private readonly ranges: GuestRamRange[];

  constructor(ranges: GuestRamRange[]) {
    const sorted = [...ranges].sort((a, b) => a.guestAddr - b.guestAddr);
    for (let i = 0; i < sorted.length; i++) {
      const r = sorted[i]!;
      if (!Number.isSafeInteger(r.guestAddr) || r.guestAddr < 0 || r.buf.length === 0) {
        throw new VrunError(`guest RAM range at ${r.guestAddr} with ${r.buf.length} bytes is invalid`);
      }
      const prev = sorted[i - 1];
      if (prev && prev.guestAddr + prev.buf.length > r.guestAddr) {
        throw new VrunError(`guest RAM ranges at 0x${prev.guestAddr.toString(16)} and 0x${r.guestAddr.toString(16)} overlap`);
      }
    }
    this.ranges = sorted;
  }

  /** Total bytes of RAM. */
  get size(): number {
    return this.ranges.reduce((n, r) => n + r.buf.length, 0);
  }

  /**
   * A view of [addr, addr + len) if the whole span is RAM in one range, else undefined. `addr` and
   * `len` come from the guest: anything that is not a safe non-negative integer is refused.
   */
  slice(addr: number, len: number): Buffer | undefined {
    if (!Number.isSafeInteger(addr) || !Number.isSafeInteger(len) || addr < 0 || len < 0) return undefined;
    for (const r of this.ranges) {
      if (addr < r.guestAddr) return undefined;
      const off = addr - r.guestAddr;
      if (off < r.buf.length) return off + len <= r.buf.length ? r.buf.subarray(off, off + len) : undefined;
    }
    return undefined;
  }
}
