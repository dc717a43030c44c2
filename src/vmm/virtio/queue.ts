import { VrunError } from '../../common/errors.js';
import { memoryBarrier, type GuestMemory } from './guest-memory.js';

/**
 * The device side of a split virtqueue (virtio 1.2, section 2.7). The rings live in guest memory and
 * the guest may rewrite them at any moment, so every field is read once into a local, checked, and
 * only then used. Any violation stops the queue: `error` is set, `pop` returns undefined from then
 * on, and nothing is ever thrown to the caller. Views handed out for descriptor buffers come from
 * GuestMemory.slice, so they cannot reach outside guest RAM.
 */

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** The largest queue the split layout allows. */
export const MAX_QUEUE_SIZE = 32768;
/** Indirect tables longer than this are refused: Linux never builds one larger than its segment limit. */
export const MAX_INDIRECT_ENTRIES = 1024;
const DESC_SIZE = 16;
const U32_MAX = 0xffff_ffff;

export interface QueueConfig {
  size: number;
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  /** VIRTIO_F_EVENT_IDX was negotiated. */
  eventIdx: boolean;
  /** VIRTIO_F_INDIRECT_DESC was negotiated. */
  indirect: boolean;
}

/** One buffer of a chain: a view of guest RAM the device may read (`readable`) or write. */
export interface DescriptorChain {
  head: number;
  readable: Buffer[];
  writable: Buffer[];
  readableBytes: number;
  writableBytes: number;
}

export class QueueError extends VrunError {
  constructor(message: string) {
    super(message);
    this.name = 'QueueError';
  }
}

export class Virtqueue {
  private desc!: Buffer;
  private avail!: Buffer;
  private used!: Buffer;
  private lastAvail = 0;
  private nextUsed = 0;
  /** used.idx at the last notification decision, for the event-index check. */
  private signalledUsed = 0;
  private readonly inFlight: Uint8Array;
  /** Set once the guest broke the protocol; the queue does nothing more until reset. */
  error: QueueError | undefined;

  constructor(
    readonly name: string,
    readonly config: QueueConfig,
    private readonly mem: GuestMemory,
  ) {
    this.inFlight = new Uint8Array(Number.isInteger(config.size) && config.size > 0 && config.size <= MAX_QUEUE_SIZE ? config.size : 1);
    this.setup();
  }

  private setup(): void {
    const { size, descAddr, availAddr, usedAddr } = this.config;
    if (!Number.isInteger(size) || size <= 0 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0) {
      this.fail(`size ${size} is not a power of two between 1 and ${MAX_QUEUE_SIZE}`);
      return;
    }
    if (descAddr % 16 !== 0 || availAddr % 2 !== 0 || usedAddr % 4 !== 0) {
      this.fail(`ring addresses desc=${hex(descAddr)} avail=${hex(availAddr)} used=${hex(usedAddr)} are misaligned`);
      return;
    }
    const desc = this.mem.slice(descAddr, DESC_SIZE * size);
    const avail = this.mem.slice(availAddr, 6 + 2 * size);
    const used = this.mem.slice(usedAddr, 6 + 8 * size);
    if (!desc || !avail || !used) {
      const which = !desc ? `descriptor table ${hex(descAddr)}` : !avail ? `available ring ${hex(availAddr)}` : `used ring ${hex(usedAddr)}`;
      this.fail(`${which} for ${size} entries is not inside guest RAM`);
      return;
    }
    this.desc = desc;
    this.avail = avail;
    this.used = used;
    // The device starts where the driver's rings start: both indices are zero after a reset, but a
    // queue re-created over live rings (e.g. after a snapshot) picks up the current used index.
    this.nextUsed = used.readUInt16LE(2);
    this.lastAvail = this.nextUsed;
    this.signalledUsed = this.nextUsed;
  }

  get size(): number {
    return this.config.size;
  }

  /** Buffers the guest made available that the device has not taken yet. */
  pending(): number {
    if (this.error) return 0;
    return (this.avail.readUInt16LE(2) - this.lastAvail) & 0xffff;
  }

  /**
   * The next available chain, or undefined when there is none or the queue is broken. With the
   * event index, the device also publishes how far it has read, so the driver only notifies again
   * when it adds past that point.
   */
  pop(): DescriptorChain | undefined {
    if (this.error) return undefined;
    let availIdx = this.avail.readUInt16LE(2);
    let waiting = (availIdx - this.lastAvail) & 0xffff;
    if (waiting === 0) {
      if (!this.config.eventIdx) return undefined;
      // Asking for a notification on the next buffer, then looking once more: the driver stores the
      // available index and then reads avail_event, so a buffer it added while we were storing would
      // otherwise get no notification (it saw the old avail_event) and no look from us (we saw the old
      // index). A driver spinning on that buffer, as Linux's console control queue does, hangs for ever.
      this.used.writeUInt16LE(this.lastAvail, 4 + 8 * this.size);
      memoryBarrier();
      availIdx = this.avail.readUInt16LE(2);
      waiting = (availIdx - this.lastAvail) & 0xffff;
      if (waiting === 0) return undefined;
    }
    if (waiting > this.size) {
      this.fail(`available index ${availIdx} is ${waiting} entries past the device's ${this.lastAvail}, more than the queue size ${this.size}`);
      return undefined;
    }
    const head = this.avail.readUInt16LE(4 + 2 * (this.lastAvail % this.size));
    if (head >= this.size) {
      this.fail(`available ring entry ${this.lastAvail % this.size} names descriptor ${head}, past the queue size ${this.size}`);
      return undefined;
    }
    if (this.inFlight[head]) {
      this.fail(`descriptor ${head} was made available again while the device still holds it`);
      return undefined;
    }
    const chain = this.walk(head);
    if (!chain) return undefined;
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    this.inFlight[head] = 1;
    if (this.config.eventIdx) this.used.writeUInt16LE(this.lastAvail, 4 + 8 * this.size);
    return chain;
  }

  private walk(head: number): DescriptorChain | undefined {
    const chain: DescriptorChain = { head, readable: [], writable: [], readableBytes: 0, writableBytes: 0 };
    let table = this.desc;
    let tableLen = this.size;
    let index = head;
    let steps = 0;
    let indirect = false;
    for (;;) {
      if (++steps > tableLen) {
        this.fail(`descriptor chain from head ${head} is longer than its ${indirect ? 'indirect table' : 'queue'} (${tableLen}): a loop`);
        return undefined;
      }
      const at = index * DESC_SIZE;
      const addrLo = table.readUInt32LE(at);
      const addrHi = table.readUInt32LE(at + 4);
      const len = table.readUInt32LE(at + 8);
      const flags = table.readUInt16LE(at + 12);
      const next = table.readUInt16LE(at + 14);
      // Above 2^53 a number can no longer hold the address exactly; no guest has RAM there.
      const addr = addrHi >= 0x20_0000 ? Number.NaN : addrHi * 0x1_0000_0000 + addrLo;

      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.config.indirect) return this.failUndef(`descriptor ${index} is indirect but VIRTIO_F_INDIRECT_DESC was not negotiated`);
        if (indirect) return this.failUndef(`indirect table of chain ${head} contains another indirect descriptor`);
        if (flags & VIRTQ_DESC_F_NEXT) return this.failUndef(`descriptor ${index} is indirect and also has NEXT set`);
        if (chain.readable.length + chain.writable.length > 0) return this.failUndef(`indirect descriptor ${index} follows direct ones in chain ${head}`);
        if (len === 0 || len % DESC_SIZE !== 0 || len / DESC_SIZE > MAX_INDIRECT_ENTRIES) {
          return this.failUndef(`indirect table of ${len} bytes at descriptor ${index} is not 1..${MAX_INDIRECT_ENTRIES} descriptors of 16 bytes`);
        }
        // No alignment check: the spec asks none of an indirect table, and Linux kmallocs them (8-byte aligned:
        // virtio-net's receive tables broke the queue when 16 was required here).
        const t = this.mem.slice(addr, len);
        if (!t) return this.failUndef(`indirect table ${hex(addr)}+${len} of chain ${head} is not inside guest RAM`);
        table = t;
        tableLen = len / DESC_SIZE;
        index = 0;
        steps = 0;
        indirect = true;
        continue;
      }

      const buf = this.mem.slice(addr, len);
      if (!buf) return this.failUndef(`descriptor ${index} of chain ${head} points at ${Number.isNaN(addr) ? `${hex(addrHi)}:${hex(addrLo)}` : hex(addr)}+${len}, outside guest RAM`);
      if (flags & VIRTQ_DESC_F_WRITE) {
        chain.writable.push(buf);
        chain.writableBytes += len;
        if (chain.writableBytes > U32_MAX) return this.failUndef(`chain ${head} has more than 4 GiB of writable buffers`);
      } else {
        if (chain.writable.length > 0) return this.failUndef(`chain ${head} has a device-readable descriptor after a writable one`);
        chain.readable.push(buf);
        chain.readableBytes += len;
        if (chain.readableBytes > U32_MAX) return this.failUndef(`chain ${head} has more than 4 GiB of readable buffers`);
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) return chain;
      if (next >= tableLen) return this.failUndef(`descriptor ${index} of chain ${head} links to ${next}, past its table of ${tableLen}`);
      index = next;
    }
  }

  /**
   * Hands a chain back to the guest with `written` bytes written into its writable buffers.
   * Returns false (and breaks the queue) only on a device-side mistake, never because of the guest.
   */
  pushUsed(chain: DescriptorChain, written: number): boolean {
    if (this.error) return false;
    if (!this.inFlight[chain.head]) {
      this.fail(`device returned descriptor ${chain.head}, which it does not hold`);
      return false;
    }
    if (!Number.isInteger(written) || written < 0 || written > chain.writableBytes) {
      this.fail(`device reported ${written} bytes written into chain ${chain.head}, which has ${chain.writableBytes} writable`);
      return false;
    }
    this.inFlight[chain.head] = 0;
    const slot = 4 + 8 * (this.nextUsed % this.size);
    this.used.writeUInt32LE(chain.head, slot);
    this.used.writeUInt32LE(written, slot + 4);
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
    // x86 keeps stores in order, so the driver sees the element before the index that publishes it.
    this.used.writeUInt16LE(this.nextUsed, 2);
    return true;
  }

  /**
   * Whether the guest wants an interrupt for what was pushed since the last call: the event index
   * (used_event in the available ring) when negotiated, otherwise the NO_INTERRUPT flag.
   */
  needsInterrupt(): boolean {
    if (this.error) return false;
    const old = this.signalledUsed;
    const now = this.nextUsed;
    this.signalledUsed = now;
    if (old === now) return false;
    // The driver stores used_event (or clears NO_INTERRUPT) and then reads used.idx; our used.idx store
    // must be visible before we read its side, or both sides miss each other and the interrupt is lost.
    memoryBarrier();
    if (this.config.eventIdx) {
      const usedEvent = this.avail.readUInt16LE(4 + 2 * this.size);
      return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
    }
    return (this.avail.readUInt16LE(0) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /** Both sides' indices as guest memory has them now, for a report on a guest that stopped making progress. */
  debugState(): Record<string, number | string> {
    const base = { size: this.size, lastAvail: this.lastAvail, nextUsed: this.nextUsed };
    if (this.error || !this.avail) return { ...base, error: this.error?.message ?? 'not set up' };
    return {
      ...base,
      availIdx: this.avail.readUInt16LE(2),
      availFlags: this.avail.readUInt16LE(0),
      usedEvent: this.avail.readUInt16LE(4 + 2 * this.size),
      usedIdx: this.used.readUInt16LE(2),
      availEvent: this.used.readUInt16LE(4 + 8 * this.size),
      eventIdx: String(this.config.eventIdx),
    };
  }

  private fail(message: string): void {
    if (!this.error) this.error = new QueueError(`virtqueue ${this.name}: ${message}`);
  }

  private failUndef(message: string): undefined {
    this.fail(message);
    return undefined;
  }
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}
