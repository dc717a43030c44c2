import { GuestMemory } from '../../../src/vmm/virtio/guest-memory.js';
import { REG, type VirtioMmio } from '../../../src/vmm/virtio/mmio.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../src/vmm/virtio/queue.js';

/**
 * A simulated virtio driver for queue tests: it owns a guest RAM buffer carved out of a larger host
 * buffer whose surrounding bytes are canaries, and writes descriptor tables and rings the way a
 * guest would (or, for hostile tests, any way the test likes).
 */

export const CANARY = 0xa5;
const GUARD = 4096;

export class GuardedRam {
  readonly host: Buffer;
  readonly ram: Buffer;
  readonly memory: GuestMemory;

  constructor(
    readonly size: number,
    readonly guestBase = 0,
  ) {
    this.host = Buffer.alloc(size + 2 * GUARD, CANARY);
    this.ram = this.host.subarray(GUARD, GUARD + size);
    this.ram.fill(0);
    this.memory = new GuestMemory([{ guestAddr: guestBase, buf: this.ram }]);
  }

  /** True while no byte outside guest RAM changed. */
  canariesIntact(): boolean {
    for (let i = 0; i < GUARD; i++) {
      if (this.host[i] !== CANARY || this.host[GUARD + this.size + i] !== CANARY) return false;
    }
    return true;
  }
}

export interface Seg {
  addr: number;
  len: number;
  write?: boolean;
}

export class SimDriver {
  readonly descAddr: number;
  readonly availAddr: number;
  readonly usedAddr: number;
  availIdx = 0;
  lastUsed = 0;
  private freeHead = 0;

  constructor(
    readonly ram: GuardedRam,
    readonly size: number,
    base = 0x1000,
  ) {
    this.descAddr = base;
    this.availAddr = base + 16 * size;
    this.usedAddr = alignUp(this.availAddr + 6 + 2 * size, 4096);
  }

  private off(addr: number): number {
    return addr - this.ram.guestBase;
  }

  writeDesc(table: number, i: number, addr: number, len: number, flags: number, next: number): void {
    const at = this.off(table) + 16 * i;
    const hi = Math.floor(addr / 2 ** 32);
    this.ram.ram.writeUInt32LE(addr >>> 0, at);
    this.ram.ram.writeUInt32LE(hi >>> 0, at + 4);
    this.ram.ram.writeUInt32LE(len >>> 0, at + 8);
    this.ram.ram.writeUInt16LE(flags, at + 12);
    this.ram.ram.writeUInt16LE(next, at + 14);
  }

  /** Writes a direct chain starting at the next free descriptor and makes it available; returns its head. */
  addChain(segs: Seg[]): number {
    const head = this.freeHead;
    segs.forEach((s, k) => {
      const i = (head + k) % this.size;
      const last = k === segs.length - 1;
      this.writeDesc(this.descAddr, i, s.addr, s.len, (s.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), (i + 1) % this.size);
    });
    this.freeHead = (head + segs.length) % this.size;
    this.publish(head);
    return head;
  }

  /** Writes an indirect table at `tableAddr` and one descriptor pointing at it. */
  addIndirect(tableAddr: number, segs: Seg[]): number {
    segs.forEach((s, k) => {
      const last = k === segs.length - 1;
      this.writeDesc(tableAddr, k, s.addr, s.len, (s.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), k + 1);
    });
    const head = this.freeHead;
    this.writeDesc(this.descAddr, head, tableAddr, 16 * segs.length, VIRTQ_DESC_F_INDIRECT, 0);
    this.freeHead = (head + 1) % this.size;
    this.publish(head);
    return head;
  }

  publish(head: number): void {
    this.ram.ram.writeUInt16LE(head, this.off(this.availAddr) + 4 + 2 * (this.availIdx % this.size));
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.ram.ram.writeUInt16LE(this.availIdx, this.off(this.availAddr) + 2);
  }

  setAvailIdx(v: number): void {
    this.availIdx = v & 0xffff;
    this.ram.ram.writeUInt16LE(this.availIdx, this.off(this.availAddr) + 2);
  }

  setAvailFlags(v: number): void {
    this.ram.ram.writeUInt16LE(v, this.off(this.availAddr));
  }

  setUsedEvent(v: number): void {
    this.ram.ram.writeUInt16LE(v & 0xffff, this.off(this.availAddr) + 4 + 2 * this.size);
  }

  usedIdx(): number {
    return this.ram.ram.readUInt16LE(this.off(this.usedAddr) + 2);
  }

  availEvent(): number {
    return this.ram.ram.readUInt16LE(this.off(this.usedAddr) + 4 + 8 * this.size);
  }

  /** Used elements the device published since the last call. */
  takeUsed(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    const idx = this.usedIdx();
    while (this.lastUsed !== idx) {
      const at = this.off(this.usedAddr) + 4 + 8 * (this.lastUsed % this.size);
      out.push({ id: this.ram.ram.readUInt32LE(at), len: this.ram.ram.readUInt32LE(at + 4) });
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  /**
   * Fills the whole descriptor table and available ring from `rand` for seeded fuzzing: mostly plausible (buffers
   * the way `writable` says, short chains, heads inside the queue), now and then anything at all.
   */
  scramble(rand: () => number, writable: boolean, addrOf: () => number, lenOf: () => number): void {
    const right = writable ? VIRTQ_DESC_F_WRITE : 0;
    const any = () => Math.floor(rand() * 65536);
    for (let i = 0; i < this.size; i++) {
      const dir = rand() < 0.95 ? right : right ^ VIRTQ_DESC_F_WRITE;
      const flags = rand() < 0.98 ? dir | (rand() < 0.2 ? VIRTQ_DESC_F_NEXT : 0) : [VIRTQ_DESC_F_INDIRECT, any()][Math.floor(rand() * 2)]!;
      this.writeDesc(this.descAddr, i, addrOf(), lenOf(), flags, rand() < 0.85 ? Math.floor(rand() * this.size) : any());
    }
    for (let i = 0; i < this.size; i++) this.ram.ram.writeUInt16LE(rand() < 0.98 ? Math.floor(rand() * this.size) : any(), this.off(this.availAddr) + 4 + 2 * i);
    this.setAvailFlags(Math.floor(rand() * 2));
    this.setAvailIdx(rand() < 0.95 ? Math.floor(rand() * (this.size + 1)) : any());
  }

  config(eventIdx = false, indirect = true) {
    return { size: this.size, descAddr: this.descAddr, availAddr: this.availAddr, usedAddr: this.usedAddr, eventIdx, indirect };
  }
}

function alignUp(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}

/**
 * What a guest driver does for each of a device's queues before DRIVER_OK: a SimDriver of `size` entries at
 * `base + i * stride` in guest RAM, its addresses and size written through the MMIO registers, then READY.
 */
export function setUpQueues(mmio: VirtioMmio, ram: GuardedRam, count: number, size: number, base: number, stride: number): SimDriver[] {
  const w = (off: number, v: number) => mmio.write(off, 4, v);
  return Array.from({ length: count }, (_, i) => {
    const d = new SimDriver(ram, size, base + i * stride);
    w(REG.QUEUE_SEL, i);
    w(REG.QUEUE_NUM, size);
    w(REG.QUEUE_DESC_LOW, d.descAddr);
    w(REG.QUEUE_DRIVER_LOW, d.availAddr);
    w(REG.QUEUE_DEVICE_LOW, d.usedAddr);
    w(REG.QUEUE_READY, 1);
    return d;
  });
}

export { prng } from '../../prng.js';
