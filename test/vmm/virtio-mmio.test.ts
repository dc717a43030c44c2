import { describe, expect, it } from 'vitest';
import { type ActivateContext, INT_CONFIG, INT_VRING, REG, STATUS, VIRTIO_MMIO_MAGIC, VirtioMmio, type VirtioDevice } from '../../src/vmm/virtio/mmio.js';
import { GuardedRam, SimDriver, prng } from './helpers/virtq-driver.js';

/** A loopback device: whatever the guest puts in a readable buffer comes back in the writable one. */
class Echo implements VirtioDevice {
  readonly name = 'echo';
  readonly deviceId = 0x2a;
  readonly features = 1n << 3n;
  readonly queueMaxSizes = [16, 8];
  readonly configSize = 8;
  readonly config = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]);
  ctx: ActivateContext | undefined;
  resets = 0;
  readConfig(offset: number, size: number): number {
    return this.config.readUIntLE(offset, size);
  }
  writeConfig(offset: number, size: number, value: number): void {
    this.config.writeUIntLE(value, offset, size);
  }
  activate(ctx: ActivateContext): void {
    this.ctx = ctx;
  }
  notify(index: number): void {
    const q = this.ctx?.queues[index];
    if (!q) return;
    for (let c = q.pop(); c; c = q.pop()) {
      const data = Buffer.concat(c.readable);
      const n = Math.min(data.length, c.writableBytes);
      data.copy(c.writable[0]!, 0, 0, n);
      q.pushUsed(c, n);
    }
    if (q.error) this.ctx?.fail(q.error.message);
    else if (q.needsInterrupt()) this.ctx?.signalUsed();
  }
  reset(): void {
    this.resets++;
    this.ctx = undefined;
  }
}

function rig() {
  const ram = new GuardedRam(256 * 1024);
  const dev = new Echo();
  const irq: boolean[] = [];
  const mmio = new VirtioMmio(dev, ram.memory, (l) => irq.push(l));
  const r = (off: number) => mmio.read(off, 4);
  const w = (off: number, v: number) => mmio.write(off, 4, v);
  return { ram, dev, irq, mmio, r, w };
}

type Rig = ReturnType<typeof rig>;

function negotiate({ r, w }: Rig, features: [number, number] = [0, 1]): number {
  w(REG.STATUS, STATUS.ACKNOWLEDGE);
  w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER);
  w(REG.DRIVER_FEATURES_SEL, 0);
  w(REG.DRIVER_FEATURES, features[0]);
  w(REG.DRIVER_FEATURES_SEL, 1);
  w(REG.DRIVER_FEATURES, features[1]);
  w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK);
  return r(REG.STATUS);
}

function setupQueue({ w }: Rig, index: number, drv: SimDriver): void {
  w(REG.QUEUE_SEL, index);
  w(REG.QUEUE_NUM, drv.size);
  w(REG.QUEUE_DESC_LOW, drv.descAddr);
  w(REG.QUEUE_DESC_HIGH, 0);
  w(REG.QUEUE_DRIVER_LOW, drv.availAddr);
  w(REG.QUEUE_DRIVER_HIGH, 0);
  w(REG.QUEUE_DEVICE_LOW, drv.usedAddr);
  w(REG.QUEUE_DEVICE_HIGH, 0);
  w(REG.QUEUE_READY, 1);
}

const OK = STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK;

describe('virtio-mmio transport', () => {
  it('identifies itself as a modern virtio-mmio device', () => {
    const { r, dev, w } = rig();
    expect(r(REG.MAGIC)).toBe(VIRTIO_MMIO_MAGIC);
    expect(r(REG.VERSION)).toBe(2);
    expect(r(REG.DEVICE_ID)).toBe(dev.deviceId);
    w(REG.DEVICE_FEATURES_SEL, 0);
    expect(r(REG.DEVICE_FEATURES)).toBe(((1 << 3) | (1 << 28) | (1 << 29)) >>> 0);
    w(REG.DEVICE_FEATURES_SEL, 1);
    expect(r(REG.DEVICE_FEATURES)).toBe(1); // VERSION_1
    w(REG.DEVICE_FEATURES_SEL, 7);
    expect(r(REG.DEVICE_FEATURES)).toBe(0);
    w(REG.QUEUE_SEL, 1);
    expect(r(REG.QUEUE_NUM_MAX)).toBe(8);
    w(REG.QUEUE_SEL, 5);
    expect(r(REG.QUEUE_NUM_MAX)).toBe(0);
  });

  it('accepts a feature set the device offers, with VERSION_1', () => {
    const x = rig();
    expect(negotiate(x, [(1 << 3) | (1 << 29), 1]) & STATUS.FEATURES_OK).toBe(STATUS.FEATURES_OK);
  });

  it('refuses features it did not offer or a driver without VERSION_1', () => {
    expect(negotiate(rig(), [1 << 5, 1]) & STATUS.FEATURES_OK).toBe(0);
    expect(negotiate(rig(), [0, 0]) & STATUS.FEATURES_OK).toBe(0);
    expect(negotiate(rig(), [0, 1 | (1 << 8)]) & STATUS.FEATURES_OK).toBe(0);
  });

  it('runs a queue end to end: notify, used ring, interrupt status and acknowledge', () => {
    const x = rig();
    const drv = new SimDriver(x.ram, 16, 0x1000);
    negotiate(x, [1 << 28, 1]);
    setupQueue(x, 0, drv);
    x.w(REG.STATUS, OK);
    expect(x.r(REG.STATUS)).toBe(OK);
    expect(x.dev.ctx?.queues[0]?.size).toBe(16);
    expect(x.dev.ctx?.queues[1]).toBeUndefined();

    x.ram.ram.write('ping', 0x20000);
    const head = drv.addIndirect(0x30000, [
      { addr: 0x20000, len: 4 },
      { addr: 0x21000, len: 16, write: true },
    ]);
    x.w(REG.QUEUE_NOTIFY, 0);
    expect(drv.takeUsed()).toEqual([{ id: head, len: 4 }]);
    expect(x.ram.ram.toString('utf8', 0x21000, 0x21004)).toBe('ping');
    expect(x.r(REG.INTERRUPT_STATUS)).toBe(INT_VRING);
    expect(x.irq).toEqual([true]);
    x.w(REG.INTERRUPT_ACK, INT_VRING);
    expect(x.r(REG.INTERRUPT_STATUS)).toBe(0);
    expect(x.irq).toEqual([true, false]);
  });

  it('ignores queue setup outside negotiation, bad sizes, and narrow register accesses', () => {
    const x = rig();
    const drv = new SimDriver(x.ram, 16, 0x1000);
    x.w(REG.QUEUE_NUM, 4); // before FEATURES_OK
    negotiate(x);
    x.w(REG.QUEUE_SEL, 0);
    x.w(REG.QUEUE_NUM, 32); // above max
    x.w(REG.QUEUE_NUM, 6); // not a power of two
    x.mmio.write(REG.QUEUE_NUM, 2, 4); // 16-bit write
    x.w(REG.QUEUE_SEL, 9);
    x.w(REG.QUEUE_READY, 1); // no such queue
    expect(x.mmio.read(REG.MAGIC, 2)).toBe(0);
    setupQueue(x, 0, drv);
    x.w(REG.QUEUE_NUM, 4); // while ready
    x.w(REG.STATUS, OK);
    expect(x.dev.ctx?.queues[0]?.size).toBe(16);
    x.w(REG.MAGIC, 1); // read-only
    expect(x.r(REG.MAGIC)).toBe(VIRTIO_MMIO_MAGIC);
    x.w(REG.STATUS, STATUS.ACKNOWLEDGE); // clearing bits without reset
    expect(x.r(REG.STATUS)).toBe(OK);
  });

  it('sets DEVICE_NEEDS_RESET and raises a config interrupt when the rings are outside RAM or the guest breaks a queue', () => {
    const x = rig();
    negotiate(x);
    x.w(REG.QUEUE_SEL, 0);
    x.w(REG.QUEUE_NUM, 16);
    x.w(REG.QUEUE_DESC_LOW, 0);
    x.w(REG.QUEUE_DESC_HIGH, 0x10); // 64 GiB up
    x.w(REG.QUEUE_READY, 1);
    x.w(REG.STATUS, OK);
    expect(x.r(REG.STATUS) & STATUS.DEVICE_NEEDS_RESET).toBe(STATUS.DEVICE_NEEDS_RESET);
    expect(x.r(REG.INTERRUPT_STATUS) & INT_CONFIG).toBe(INT_CONFIG);
    expect(x.mmio.lastError).toMatch(/descriptor table 0x1000000000 .* not inside guest RAM/);

    const y = rig();
    const drv = new SimDriver(y.ram, 16, 0x1000);
    negotiate(y);
    setupQueue(y, 0, drv);
    y.w(REG.STATUS, OK);
    drv.publish(40); // head past the queue size
    y.w(REG.QUEUE_NOTIFY, 0);
    expect(y.r(REG.STATUS) & STATUS.DEVICE_NEEDS_RESET).toBe(STATUS.DEVICE_NEEDS_RESET);
    expect(y.mmio.lastError).toMatch(/descriptor 40, past the queue size 16/);
    // Further notifications do nothing until the driver resets the device.
    y.w(REG.QUEUE_NOTIFY, 0);
    y.w(REG.STATUS, 0);
    expect(y.r(REG.STATUS)).toBe(0);
    expect(y.dev.resets).toBe(1);
    expect(y.ram.canariesIntact()).toBe(true);
  });

  it('bounds config space accesses and counts config generations', () => {
    const x = rig();
    expect(x.mmio.read(REG.CONFIG + 2, 2)).toBe(0x0403);
    x.mmio.write(REG.CONFIG + 7, 1, 0xee);
    expect(x.dev.config[7]).toBe(0xee);
    expect(x.mmio.read(REG.CONFIG + 6, 4)).toBe(0);
    x.mmio.write(REG.CONFIG + 8, 1, 1);
    expect(x.dev.config.length).toBe(8);
    const g = x.r(REG.CONFIG_GENERATION);
    x.mmio.configChanged();
    expect(x.r(REG.CONFIG_GENERATION)).toBe(g + 1);
  });
});

describe('virtio-mmio transport against a hostile guest', () => {
  it('survives 20,000 random register and config accesses without throwing or touching memory outside RAM', () => {
    const rand = prng(0xbadc0de);
    const x = rig();
    const regs = Object.values(REG);
    const sizes = [1, 2, 4, 4, 4, 8];
    for (let i = 0; i < 20_000; i++) {
      const offset = rand() < 0.8 ? regs[Math.floor(rand() * regs.length)]! + (rand() < 0.1 ? Math.floor(rand() * 4) : 0) : Math.floor(rand() * 0x200);
      const size = sizes[Math.floor(rand() * sizes.length)]!;
      const value = rand() < 0.5 ? Math.floor(rand() * 2 ** 32) : Math.floor(rand() * 64);
      if (rand() < 0.5) x.mmio.write(offset, size, value);
      else x.mmio.read(offset, size);
      // Keep driving the device through its states so queue setup and activation get exercised.
      if (i % 97 === 0) negotiate(x, [Math.floor(rand() * 2 ** 32), rand() < 0.8 ? 1 : Math.floor(rand() * 8)]);
      if (i % 389 === 0) x.w(REG.STATUS, 0);
    }
    expect(x.ram.canariesIntact()).toBe(true);
    expect(x.r(REG.MAGIC)).toBe(VIRTIO_MMIO_MAGIC);
  });
});
