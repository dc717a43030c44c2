import { VrunError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';

/**
 * Port I/O and MMIO dispatch: address ranges map to devices, and an exit's address becomes an
 * offset into the device it hits. Accesses that hit nothing (or straddle a device's end) read as
 * all-ones, like an empty ISA/PCI bus, and are logged at a bounded rate since the guest controls
 * how many there are.
 */

export interface BusDevice {
  readonly name: string;
  /** `size` is 1, 2 or 4; returns the value zero-extended to 32 bits. */
  read(offset: number, size: number): number;
  write(offset: number, size: number, value: number): void;
}

interface Mapping {
  base: number;
  size: number;
  device: BusDevice;
}

const LOG_BURST = 20;
const LOG_WINDOW_MS = 10_000;

export class Bus {
  private readonly map: Mapping[] = [];
  private logTokens = LOG_BURST;
  private windowStart = 0;
  private suppressed = 0;
  /** Accesses that hit no device since the bus was created. */
  unhandled = 0;

  constructor(
    readonly kind: 'pio' | 'mmio',
    private readonly logger?: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  private get limit(): number {
    return this.kind === 'pio' ? 0x1_0000 : 2 ** 52;
  }

  insert(base: number, size: number, device: BusDevice): void {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(size) || base < 0 || size <= 0 || base + size > this.limit) {
      throw new VrunError(`${this.kind} range ${fmt(base)}+${size} for ${device.name} is invalid`);
    }
    const clash = this.map.find((m) => base < m.base + m.size && m.base < base + size);
    if (clash) {
      throw new VrunError(`${this.kind} range ${fmt(base)}+${fmt(size)} for ${device.name} overlaps ${clash.device.name} at ${fmt(clash.base)}+${fmt(clash.size)}`);
    }
    const at = this.map.findIndex((m) => m.base > base);
    this.map.splice(at < 0 ? this.map.length : at, 0, { base, size, device });
  }

  remove(base: number): boolean {
    const i = this.map.findIndex((m) => m.base === base);
    if (i < 0) return false;
    this.map.splice(i, 1);
    return true;
  }

  /** The device covering [addr, addr + size), if one covers all of it. */
  find(addr: number, size = 1): { device: BusDevice; offset: number } | undefined {
    let lo = 0;
    let hi = this.map.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const m = this.map[mid]!;
      if (addr < m.base) hi = mid - 1;
      else if (addr >= m.base + m.size) lo = mid + 1;
      else return addr + size <= m.base + m.size ? { device: m.device, offset: addr - m.base } : undefined;
    }
    return undefined;
  }

  read(addr: number, size: number): number {
    const hit = validSize(size) ? this.find(addr, size) : undefined;
    if (!hit) {
      this.miss('read', addr, size);
      return allOnes(size);
    }
    return maskTo(hit.device.read(hit.offset, size), size);
  }

  write(addr: number, size: number, value: number): void {
    const hit = validSize(size) ? this.find(addr, size) : undefined;
    if (!hit) {
      this.miss('write', addr, size, value);
      return;
    }
    hit.device.write(hit.offset, size, maskTo(value, size));
  }

  /**
   * An exit's data buffer (little-endian, 1..8 bytes). Eight-byte accesses are split into two
   * four-byte ones, low half first, which is how virtio-mmio defines 64-bit fields anyway.
   */
  readInto(addr: number, data: Uint8Array): void {
    const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (data.length === 8) {
      view.writeUInt32LE(this.read(addr, 4), 0);
      view.writeUInt32LE(this.read(addr + 4, 4), 4);
    } else if (validSize(data.length)) {
      view.writeUIntLE(this.read(addr, data.length), 0, data.length);
    } else {
      this.miss('read', addr, data.length);
      view.fill(0xff);
    }
  }

  writeFrom(addr: number, data: Uint8Array): void {
    const view = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (data.length === 8) {
      this.write(addr, 4, view.readUInt32LE(0));
      this.write(addr + 4, 4, view.readUInt32LE(4));
    } else if (validSize(data.length)) {
      this.write(addr, data.length, view.readUIntLE(0, data.length));
    } else {
      this.miss('write', addr, data.length);
    }
  }

  private miss(op: 'read' | 'write', addr: number, size: number, value?: number): void {
    this.unhandled++;
    if (!this.logger) return;
    const t = this.now();
    if (t - this.windowStart >= LOG_WINDOW_MS) {
      if (this.suppressed > 0) this.logger.warn({ bus: this.kind, suppressed: this.suppressed }, 'unhandled guest accesses not logged');
      this.windowStart = t;
      this.logTokens = LOG_BURST;
      this.suppressed = 0;
    }
    if (this.logTokens > 0) {
      this.logTokens--;
      this.logger.debug({ bus: this.kind, op, addr: fmt(addr), size, value }, 'guest access to no device');
    } else {
      this.suppressed++;
    }
  }
}

function validSize(size: number): boolean {
  return size === 1 || size === 2 || size === 4;
}

/** Devices and exits may hand over wider values than the access; only `size` bytes are real. */
function maskTo(value: number, size: number): number {
  return size >= 4 ? value >>> 0 : (value >>> 0) % 2 ** (size * 8);
}

function allOnes(size: number): number {
  if (size >= 4 || !validSize(size)) return 0xffff_ffff;
  return 2 ** (size * 8) - 1;
}

function fmt(n: number): string {
  return `0x${n.toString(16)}`;
}
