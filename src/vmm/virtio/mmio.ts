import type { Logger } from '../../common/log.js';
import type { BusDevice } from '../devices/bus.js';
import type { GuestMemory } from './guest-memory.js';
import { MAX_QUEUE_SIZE, Virtqueue } from './queue.js';

/**
 * The virtio-mmio transport, modern layout only (virtio 1.2 section 4.2.2, version 2). It owns the
 * register file and the status state machine; the device model behind it only sees negotiated
 * features, validated queues, config-space accesses and notifications. Every guest write is
 * checked: a write the spec forbids is ignored and logged, and a device that can no longer run sets
 * DEVICE_NEEDS_RESET and raises a configuration interrupt, as the spec asks.
 */

export const VIRTIO_MMIO_MAGIC = 0x7472_6976; // "virt"
export const VIRTIO_MMIO_VERSION = 2;
/** Vendor id reported to the guest; QEMU uses the same "QEMU" constant, any value works. */
export const VIRTIO_MMIO_VENDOR = 0x554d_4551;

export const REG = {
  MAGIC: 0x000,
  VERSION: 0x004,
  DEVICE_ID: 0x008,
  VENDOR_ID: 0x00c,
  DEVICE_FEATURES: 0x010,
  DEVICE_FEATURES_SEL: 0x014,
  DRIVER_FEATURES: 0x020,
  DRIVER_FEATURES_SEL: 0x024,
  QUEUE_SEL: 0x030,
  QUEUE_NUM_MAX: 0x034,
  QUEUE_NUM: 0x038,
  QUEUE_READY: 0x044,
  QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  QUEUE_DESC_LOW: 0x080,
  QUEUE_DESC_HIGH: 0x084,
  QUEUE_DRIVER_LOW: 0x090,
  QUEUE_DRIVER_HIGH: 0x094,
  QUEUE_DEVICE_LOW: 0x0a0,
  QUEUE_DEVICE_HIGH: 0x0a4,
  SHM_SEL: 0x0ac,
  SHM_LEN_LOW: 0x0b0,
  SHM_LEN_HIGH: 0x0b4,
  SHM_BASE_LOW: 0x0b8,
  SHM_BASE_HIGH: 0x0bc,
  CONFIG_GENERATION: 0x0fc,
  CONFIG: 0x100,
} as const;

export const STATUS = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 0x40,
  FAILED: 0x80,
} as const;

export const INT_VRING = 1;
export const INT_CONFIG = 2;

export const VIRTIO_F_INDIRECT_DESC = 28n;
export const VIRTIO_F_EVENT_IDX = 29n;
export const VIRTIO_F_VERSION_1 = 32n;
export const VIRTIO_F_ACCESS_PLATFORM = 33n;

export function bit(n: bigint): bigint {
  return 1n << n;
}

/** What a device model sees once the driver said DRIVER_OK. */
export interface ActivateContext {
  memory: GuestMemory;
  /** Indexed like the device's queues; undefined for queues the driver did not enable. */
  queues: (Virtqueue | undefined)[];
  features: bigint;
  /** Signals used buffers to the guest (sets the interrupt status bit and raises the line). */
  signalUsed(): void;
  /** Reports a fatal device error: the transport sets DEVICE_NEEDS_RESET. */
  fail(message: string): void;
}

export interface VirtioDevice {
  readonly name: string;
  readonly deviceId: number;
  /** Device-specific feature bits; the transport adds VERSION_1, INDIRECT_DESC and EVENT_IDX. */
  readonly features: bigint;
  readonly queueMaxSizes: readonly number[];
  readonly configSize: number;
  readConfig(offset: number, size: number): number;
  writeConfig(offset: number, size: number, value: number): void;
  activate(ctx: ActivateContext): void;
  notify(queue: number): void;
  reset(): void;
  /** Device state worth reporting when a guest stops making progress. */
  debugState?(): Record<string, unknown>;
}

interface QueueRegs {
  num: number;
  ready: boolean;
  desc: number;
  avail: number;
  used: number;
}

/** Raises or lowers the device's interrupt line (an irqfd write, or a test's callback). */
export type InterruptLine = (level: boolean) => void;

export class VirtioMmio implements BusDevice {
  readonly name: string;
  private status = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeatures = 0n;
  private queueSel = 0;
  private queues: QueueRegs[];
  private interruptStatus = 0;
  private configGeneration = 0;
  private active: Virtqueue[] = [];
  readonly offeredFeatures: bigint;
  /** The last reason the device stopped, for the VMM's error events. */
  lastError: string | undefined;

  constructor(
    readonly device: VirtioDevice,
    private readonly memory: GuestMemory,
    private readonly interrupt: InterruptLine,
    private readonly logger?: Logger,
    /**
     * A vhost-user backend interrupts the guest through the irqfd without going through this
     * register file, so InterruptStatus must report "used buffers" whenever the device runs, or the
     * guest's handler would see 0 and ignore the interrupt. Spurious queue checks are harmless.
     */
    private readonly externalInterrupts = false,
  ) {
    this.name = `virtio-mmio:${device.name}`;
    this.offeredFeatures = device.features | bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX);
    for (const m of device.queueMaxSizes) {
      if (!Number.isInteger(m) || m < 1 || m > MAX_QUEUE_SIZE || (m & (m - 1)) !== 0) {
        throw new Error(`${device.name}: queue size ${m} is not a power of two up to ${MAX_QUEUE_SIZE}`);
      }
    }
    this.queues = this.freshQueues();
  }

  private freshQueues(): QueueRegs[] {
    return this.device.queueMaxSizes.map((max) => ({ num: max, ready: false, desc: 0, avail: 0, used: 0 }));
  }

  get deviceStatus(): number {
    return this.status;
  }

  read(offset: number, size: number): number {
    if (offset >= REG.CONFIG) return this.readConfig(offset - REG.CONFIG, size);
    if (size !== 4 || offset % 4 !== 0) {
      this.reject(`read of ${size} bytes at register 0x${offset.toString(16)}: control registers are 32-bit aligned`);
      return 0;
    }
    const q = this.queues[this.queueSel];
    switch (offset) {
      case REG.MAGIC:
        return VIRTIO_MMIO_MAGIC;
      case REG.VERSION:
        return VIRTIO_MMIO_VERSION;
      case REG.DEVICE_ID:
        return this.device.deviceId;
      case REG.VENDOR_ID:
        return VIRTIO_MMIO_VENDOR;
      case REG.DEVICE_FEATURES:
        return this.deviceFeaturesSel > 1 ? 0 : Number((this.offeredFeatures >> BigInt(32 * this.deviceFeaturesSel)) & 0xffff_ffffn);
      case REG.QUEUE_NUM_MAX:
        return q ? this.device.queueMaxSizes[this.queueSel]! : 0;
      case REG.QUEUE_READY:
        return q?.ready ? 1 : 0;
      case REG.INTERRUPT_STATUS:
        return this.externalInterrupts && this.status & STATUS.DRIVER_OK ? this.interruptStatus | INT_VRING : this.interruptStatus;
      case REG.STATUS:
        return this.status;
      case REG.CONFIG_GENERATION:
        return this.configGeneration;
      case REG.SHM_LEN_LOW:
      case REG.SHM_LEN_HIGH:
        // No shared memory regions: a length of all ones says "absent".
        return 0xffff_ffff;
      default:
        return 0;
    }
  }

  write(offset: number, size: number, value: number): void {
    if (offset >= REG.CONFIG) {
      this.writeConfig(offset - REG.CONFIG, size, value);
      return;
    }
    if (size !== 4 || offset % 4 !== 0) {
      this.reject(`write of ${size} bytes at register 0x${offset.toString(16)}: control registers are 32-bit aligned`);
      return;
    }
    switch (offset) {
      case REG.DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = value;
        return;
      case REG.DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = value;
        return;
      case REG.DRIVER_FEATURES:
        this.writeDriverFeatures(value);
        return;
      case REG.QUEUE_SEL:
        // Out-of-range selections are allowed; they read back a max size of 0, which tells the driver.
        this.queueSel = value;
        return;
      case REG.QUEUE_NUM:
      case REG.QUEUE_DESC_LOW:
      case REG.QUEUE_DESC_HIGH:
      case REG.QUEUE_DRIVER_LOW:
      case REG.QUEUE_DRIVER_HIGH:
      case REG.QUEUE_DEVICE_LOW:
      case REG.QUEUE_DEVICE_HIGH:
        this.writeQueueField(offset, value);
        return;
      case REG.QUEUE_READY:
        this.writeQueueReady(value);
        return;
      case REG.QUEUE_NOTIFY:
        this.queueNotify(value);
        return;
      case REG.INTERRUPT_ACK:
        this.interruptStatus &= ~value;
        if (this.interruptStatus === 0) this.interrupt(false);
        return;
      case REG.STATUS:
        this.writeStatus(value);
        return;
      case REG.SHM_SEL:
        return;
      default:
        this.reject(`write to read-only or unknown register 0x${offset.toString(16)}`);
    }
  }

  private writeDriverFeatures(value: number): void {
    if (this.status & STATUS.FEATURES_OK || !(this.status & STATUS.DRIVER)) {
      this.reject('driver features written outside feature negotiation');
      return;
    }
    if (this.driverFeaturesSel > 1) {
      if (value !== 0) this.reject(`driver features word ${this.driverFeaturesSel} set: no such features`);
      return;
    }
    const shift = BigInt(32 * this.driverFeaturesSel);
    this.driverFeatures = (this.driverFeatures & ~(0xffff_ffffn << shift)) | (BigInt(value >>> 0) << shift);
  }

  private writeQueueField(offset: number, value: number): void {
    const q = this.queues[this.queueSel];
    if (!q) {
      this.reject(`queue ${this.queueSel} does not exist`);
      return;
    }
    if (q.ready || !(this.status & STATUS.FEATURES_OK) || this.status & STATUS.DRIVER_OK) {
      this.reject(`queue ${this.queueSel} configured while it is ready or outside setup`);
      return;
    }
    const lo = (cur: number) => Math.floor(cur / 2 ** 32) * 2 ** 32 + (value >>> 0);
    const hi = (cur: number) => {
      // Guest RAM never reaches 2^53; an address that high can only fail the RAM check later.
      const h = Math.min(value >>> 0, 0x1f_ffff);
      return h * 2 ** 32 + (cur % 2 ** 32);
    };
    switch (offset) {
      case REG.QUEUE_NUM: {
        const max = this.device.queueMaxSizes[this.queueSel]!;
        if (value === 0 || value > max || (value & (value - 1)) !== 0) {
          this.reject(`queue ${this.queueSel} size ${value} is not a power of two up to ${max}`);
          return;
        }
        q.num = value;
        return;
      }
      case REG.QUEUE_DESC_LOW:
        q.desc = lo(q.desc);
        return;
      case REG.QUEUE_DESC_HIGH:
        q.desc = hi(q.desc);
        return;
      case REG.QUEUE_DRIVER_LOW:
        q.avail = lo(q.avail);
        return;
      case REG.QUEUE_DRIVER_HIGH:
        q.avail = hi(q.avail);
        return;
      case REG.QUEUE_DEVICE_LOW:
        q.used = lo(q.used);
        return;
      case REG.QUEUE_DEVICE_HIGH:
        q.used = hi(q.used);
        return;
    }
  }

  private writeQueueReady(value: number): void {
    const q = this.queues[this.queueSel];
    if (!q) {
      this.reject(`queue ${this.queueSel} does not exist`);
      return;
    }
    if (value === 0) {
      // Disabling a queue of a running device is only allowed with VIRTIO_F_RING_RESET, which we do not offer.
      if (this.status & STATUS.DRIVER_OK) this.reject(`queue ${this.queueSel} disabled while the device runs`);
      else q.ready = false;
      return;
    }
    if (value !== 1 || !(this.status & STATUS.FEATURES_OK) || this.status & STATUS.DRIVER_OK) {
      this.reject(`queue ${this.queueSel} ready=${value} outside setup`);
      return;
    }
    q.ready = true;
  }

  /** Device status, pending interrupt bits and each running queue's indices. */
  debugState(): Record<string, unknown> {
    return {
      device: this.name,
      status: this.status,
      interruptStatus: this.interruptStatus,
      queues: this.active.map((q) => q.debugState()),
      ...(this.device.debugState ? { state: this.device.debugState() } : {}),
    };
  }

  /** A QueueNotify write, from an MMIO exit or from the ioeventfd that catches it without one. */
  queueNotify(value: number): void {
    if (!(this.status & STATUS.DRIVER_OK) || this.status & STATUS.DEVICE_NEEDS_RESET) return;
    // Without VIRTIO_F_NOTIFICATION_DATA the value is just the queue index.
    const index = value & 0xffff;
    if (!this.active[index]) {
      this.reject(`notify for queue ${index}, which is not running`);
      return;
    }
    this.device.notify(index);
  }

  private writeStatus(value: number): void {
    value &= 0xff;
    if (value === 0) {
      this.reset();
      return;
    }
    // Bits only ever get added until reset; FAILED may come at any time.
    if ((value & this.status) !== this.status) {
      this.reject(`status 0x${value.toString(16)} clears bits of 0x${this.status.toString(16)} without a reset`);
      return;
    }
    const added = value & ~this.status;
    if (added & STATUS.DEVICE_NEEDS_RESET) {
      this.reject('driver tried to set DEVICE_NEEDS_RESET');
      return;
    }
    if (added & STATUS.FEATURES_OK) {
      const unknown = this.driverFeatures & ~this.offeredFeatures;
      if (!(value & STATUS.DRIVER) || unknown !== 0n || !(this.driverFeatures & bit(VIRTIO_F_VERSION_1))) {
        this.reject(`driver features 0x${this.driverFeatures.toString(16)} refused (offered 0x${this.offeredFeatures.toString(16)}, VERSION_1 required)`);
        // Leaving FEATURES_OK clear tells the driver the set was not accepted.
        this.status = value & ~STATUS.FEATURES_OK & ~STATUS.DRIVER_OK;
        return;
      }
    }
    if (added & STATUS.DRIVER_OK) {
      if (!(value & STATUS.FEATURES_OK)) {
        this.reject('DRIVER_OK without FEATURES_OK');
        return;
      }
      this.status = value;
      this.activate();
      return;
    }
    this.status = value;
  }

  private activate(): void {
    const eventIdx = (this.driverFeatures & bit(VIRTIO_F_EVENT_IDX)) !== 0n;
    const indirect = (this.driverFeatures & bit(VIRTIO_F_INDIRECT_DESC)) !== 0n;
    const queues = this.queues.map((q, i) =>
      q.ready ? new Virtqueue(`${this.device.name}[${i}]`, { size: q.num, descAddr: q.desc, availAddr: q.avail, usedAddr: q.used, eventIdx, indirect }, this.memory) : undefined,
    );
    const broken = queues.find((q) => q?.error);
    if (broken?.error) {
      this.fail(broken.error.message);
      return;
    }
    this.active = [];
    queues.forEach((q, i) => {
      if (q) this.active[i] = q;
    });
    try {
      this.device.activate({
        memory: this.memory,
        queues,
        features: this.driverFeatures,
        signalUsed: () => this.raise(INT_VRING),
        fail: (m) => this.fail(m),
      });
    } catch (err) {
      this.fail(`activation failed: ${(err as Error).message}`);
    }
  }

  private raise(bits: number): void {
    this.interruptStatus |= bits;
    this.interrupt(true);
  }

  /** The device broke (or the guest broke it): stop using the queues and tell the driver. */
  fail(message: string): void {
    this.lastError = message;
    this.logger?.warn({ device: this.name, err: message }, 'virtio device needs reset');
    this.active = [];
    this.status |= STATUS.DEVICE_NEEDS_RESET;
    if (this.status & STATUS.DRIVER_OK) this.raise(INT_CONFIG);
  }

  /** A config-space change the driver must notice (e.g. console port added). */
  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) >>> 0;
    if (this.status & STATUS.DRIVER_OK) this.raise(INT_CONFIG);
  }

  private reset(): void {
    this.device.reset();
    this.status = 0;
    this.deviceFeaturesSel = 0;
    this.driverFeaturesSel = 0;
    this.driverFeatures = 0n;
    this.queueSel = 0;
    this.queues = this.freshQueues();
    this.active = [];
    this.interruptStatus = 0;
    this.interrupt(false);
  }

  private readConfig(offset: number, size: number): number {
    if ((size !== 1 && size !== 2 && size !== 4) || offset + size > this.device.configSize) {
      this.reject(`config read ${offset}+${size} past the ${this.device.configSize}-byte config space`);
      return 0;
    }
    return this.device.readConfig(offset, size);
  }

  private writeConfig(offset: number, size: number, value: number): void {
    if ((size !== 1 && size !== 2 && size !== 4) || offset + size > this.device.configSize) {
      this.reject(`config write ${offset}+${size} past the ${this.device.configSize}-byte config space`);
      return;
    }
    // Only `size` bytes are real; the device models may rely on that.
    this.device.writeConfig(offset, size, size === 4 ? value >>> 0 : (value >>> 0) % 2 ** (8 * size));
  }

  /** Guest mistakes are the guest's problem: ignored, logged at debug so a noisy guest cannot flood logs. */
  private reject(message: string): void {
    this.logger?.debug({ device: this.name }, message);
  }
}
