import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { kvmAddon, type NativeGuestRam } from '../../src/vmm/kvm/native.js';
import {
  DEFLATE_QUEUE,
  INFLATE_QUEUE,
  MAX_REPORT_RANGES,
  ramFileDiscarder,
  REPORTING_QUEUE,
  VIRTIO_BALLOON_F_REPORTING,
  VIRTIO_ID_BALLOON,
  VirtioBalloon,
  type DiscardRam,
} from '../../src/vmm/virtio/devices/balloon.js';
import { GuestMemory } from '../../src/vmm/virtio/guest-memory.js';
import { REG, STATUS, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_VERSION_1, VirtioMmio } from '../../src/vmm/virtio/mmio.js';
import { VIRTQ_DESC_F_WRITE } from '../../src/vmm/virtio/queue.js';
import { negotiateFeatures } from './helpers/net-rig.js';
import { GuardedRam, prng, setUpQueues, type Seg, type SimDriver } from './helpers/virtq-driver.js';

/**
 * The free-page-reporting balloon against its driver's side, simulated in guest RAM: on a real memfd (the
 * native addon's GuestRam, the same RAM file the VMM maps) reported ranges must really leave the file and read
 * back as zeros, and a malformed report must stop the device with the file and its bytes as they were; then a
 * seeded run of hostile rings on all three queues.
 */

const PAGE = 4096;
const G = 0x100000;
/** Rings at G + 0x1000 (0x4000 apart per queue); everything from DATA on is "free memory" for reports. */
const DATA = G + 0x40000;
const ALL = (1n << VIRTIO_F_VERSION_1) | (1n << VIRTIO_BALLOON_F_REPORTING) | (1n << VIRTIO_F_INDIRECT_DESC);

/** Guest RAM on a memfd, seen as a GuardedRam (no canaries: the mapping is the whole file) so SimDriver drives it. */
function memfdRam(size: number): { ram: GuardedRam; native: NativeGuestRam; discard: DiscardRam; blocks: () => number } {
  const native = new (kvmAddon().GuestRam)(size);
  const buf = Buffer.from(native.memory());
  // The ring pages exist before anything is measured, so the file's size changes only by what is given back.
  buf.fill(0, 0, DATA - G);
  const memory = new GuestMemory([{ guestAddr: G, buf }]);
  const ram = { host: buf, ram: buf, memory, size, guestBase: G, canariesIntact: () => true } as unknown as GuardedRam;
  return { ram, native, discard: ramFileDiscarder(buf, (o, l) => native.discard(o, l)), blocks: () => fs.fstatSync(native.memfd()).blocks };
}

function bringUp(ram: GuardedRam, discard: DiscardRam, features = ALL, size = 64) {
  const dev = new VirtioBalloon(discard);
  let irqs = 0;
  const mmio = new VirtioMmio(dev, ram.memory, (level) => (irqs += level ? 1 : 0));
  negotiateFeatures(mmio, features);
  const drivers = setUpQueues(mmio, ram, 3, size, G + 0x1000, 0x4000);
  mmio.write(REG.STATUS, 4, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK);
  expect(mmio.deviceStatus & STATUS.DRIVER_OK).toBe(STATUS.DRIVER_OK);
  return { dev, mmio, drivers, report: drivers[REPORTING_QUEUE]!, notify: (q: number) => mmio.write(REG.QUEUE_NOTIFY, 4, q), irqs: () => irqs };
}

function range(addr: number, len: number): Seg {
  return { addr, len, write: true };
}

describe('virtio-balloon (free page reporting)', () => {
  it('offers reporting only, on queue 2 after inflate and deflate, with num_pages 0 and actual echoed back', () => {
    const ram = new GuardedRam(512 * 1024, G);
    const dev = new VirtioBalloon(() => {});
    const mmio = new VirtioMmio(dev, ram.memory, () => {});
    expect(mmio.read(REG.DEVICE_ID, 4)).toBe(VIRTIO_ID_BALLOON);
    expect(mmio.offeredFeatures & ~((1n << VIRTIO_F_VERSION_1) | (1n << VIRTIO_F_INDIRECT_DESC) | (1n << VIRTIO_F_EVENT_IDX))).toBe(1n << VIRTIO_BALLOON_F_REPORTING);
    expect([INFLATE_QUEUE, DEFLATE_QUEUE, REPORTING_QUEUE]).toEqual([0, 1, 2]);
    mmio.write(REG.QUEUE_SEL, 4, 2);
    // Linux refuses a reporting queue shorter than PAGE_REPORTING_CAPACITY (32).
    expect(mmio.read(REG.QUEUE_NUM_MAX, 4)).toBeGreaterThanOrEqual(32);
    mmio.write(REG.QUEUE_SEL, 4, 3);
    expect(mmio.read(REG.QUEUE_NUM_MAX, 4)).toBe(0);
    expect(mmio.read(REG.CONFIG, 4)).toBe(0);
    mmio.write(REG.CONFIG + 4, 4, 1234);
    mmio.write(REG.CONFIG, 4, 99);
    expect([mmio.read(REG.CONFIG, 4), mmio.read(REG.CONFIG + 4, 4), mmio.read(REG.CONFIG + 5, 1)]).toEqual([0, 1234, 1234 >> 8]);
    mmio.write(REG.CONFIG + 6, 2, 1);
    expect(mmio.read(REG.CONFIG + 4, 4)).toBe(1234 + 0x10000);
  });

  it('gives reported ranges back: the memfd loses exactly those pages, they read as zeros, their neighbours keep their bytes', () => {
    const m = memfdRam(4 << 20);
    const rig = bringUp(m.ram, m.discard);
    const off = (a: number) => a - G;
    m.ram.ram.fill(0x5a, off(DATA), off(DATA) + (2 << 20));
    const before = m.blocks();
    const a = DATA + 0x10000;
    const b = DATA + 0x100000;
    const head = rig.report.addChain([range(a, 64 * PAGE), range(b, 16 * PAGE)]);
    rig.notify(REPORTING_QUEUE);
    expect(rig.report.takeUsed()).toEqual([{ id: head, len: 0 }]);
    expect(rig.irqs()).toBe(1);
    expect(rig.mmio.deviceStatus & STATUS.DEVICE_NEEDS_RESET).toBe(0);
    // st_blocks counts 512-byte units the file really holds.
    expect(before - m.blocks()).toBe((80 * PAGE) / 512);
    expect(m.ram.ram.subarray(off(a), off(a) + 64 * PAGE).every((x) => x === 0)).toBe(true);
    expect(m.ram.ram.subarray(off(b), off(b) + 16 * PAGE).every((x) => x === 0)).toBe(true);
    expect(m.ram.ram[off(a) - 1]).toBe(0x5a);
    expect(m.ram.ram[off(a) + 64 * PAGE]).toBe(0x5a);
    expect(m.ram.ram[off(b) + 16 * PAGE]).toBe(0x5a);
    expect(rig.dev.stats).toMatchObject({ reports: 1, rangesDiscarded: 2, bytesDiscarded: 80 * PAGE, discardErrors: 0 });
    // Touching a page given back (even reading it: shmem has no shared zero page) makes it the guest's again.
    expect(m.blocks()).toBe(before);
  });

  it('reports Linux-style: indirect tables of 32 ranges, one report at a time, with event index', () => {
    const m = memfdRam(8 << 20);
    const rig = bringUp(m.ram, m.discard, ALL | (1n << VIRTIO_F_EVENT_IDX));
    m.ram.ram.fill(1, DATA - G, DATA - G + (4 << 20));
    const before = m.blocks();
    for (let r = 0; r < 4; r++) {
      const segs = Array.from({ length: 32 }, (_, i) => range(DATA + r * (1 << 20) + i * 32 * 1024, 32 * 1024));
      rig.report.setUsedEvent(rig.report.availIdx);
      const head = rig.report.addIndirect(G + 0x20000 + r * 0x1000, segs);
      rig.notify(REPORTING_QUEUE);
      expect(rig.report.takeUsed()).toEqual([{ id: head, len: 0 }]);
    }
    expect(before - m.blocks()).toBe((4 << 20) / 512);
    expect(rig.irqs()).toBe(4);
  });

  describe('a malformed report stops the device and gives nothing back', () => {
    const cases: [string, (d: SimDriver) => void, RegExp][] = [
      ['an unaligned address', (d) => d.addChain([range(DATA + 512, PAGE)]), /range 0 \(4096 bytes\) is not whole 4096-byte pages/],
      ['a length that is not whole pages', (d) => d.addChain([range(DATA, PAGE + 100)]), /range 0 \(4196 bytes\) is not whole/],
      ['a zero length', (d) => d.addChain([range(DATA, 0)]), /range 0 \(0 bytes\)/],
      ['a range running past the end of RAM', (d) => d.addChain([range(G + (4 << 20) - PAGE, 2 * PAGE)]), /virtqueue balloon\[2\]: .*outside guest RAM/],
      ['a range below RAM', (d) => d.addChain([range(G - PAGE, 2 * PAGE)]), /virtqueue balloon\[2\]: .*outside guest RAM/],
      ['an address that overflows 64 bits', (d) => d.addChain([range(2 ** 64 - PAGE, 2 * PAGE)]), /virtqueue balloon\[2\]: .*outside guest RAM/],
      ['a device-readable range', (d) => d.addChain([{ addr: DATA, len: PAGE }]), /report chain \d+ has device-readable buffers/],
      ['a good range followed by a bad one', (d) => d.addChain([range(DATA, 16 * PAGE), range(DATA + 0x20000 + 8, PAGE)]), /range 1 \(4096 bytes\) is not whole/],
      [
        `more than ${MAX_REPORT_RANGES} ranges`,
        (d) => d.addIndirect(G + 0x20000, Array.from({ length: MAX_REPORT_RANGES + 1 }, (_, i) => range(DATA + i * PAGE, PAGE))),
        /has 257 ranges, more than 256/,
      ],
    ];
    for (const [what, plant, why] of cases) {
      it(what, () => {
        const m = memfdRam(4 << 20);
        const rig = bringUp(m.ram, m.discard);
        m.ram.ram.fill(0x33, DATA - G);
        const blocks = m.blocks();
        const data = Buffer.from(m.ram.ram.subarray(DATA - G));
        plant(rig.report);
        rig.notify(REPORTING_QUEUE);
        expect(rig.mmio.deviceStatus & STATUS.DEVICE_NEEDS_RESET).toBe(STATUS.DEVICE_NEEDS_RESET);
        expect(rig.mmio.lastError).toMatch(why);
        expect(rig.report.takeUsed()).toEqual([]);
        expect(m.blocks()).toBe(blocks);
        expect(m.ram.ram.subarray(DATA - G).equals(data)).toBe(true);
        expect(rig.dev.stats.rangesDiscarded).toBe(0);
        // Stopped means stopped: a good report afterwards is not taken either.
        rig.report.addChain([range(DATA, PAGE)]);
        rig.notify(REPORTING_QUEUE);
        expect(m.blocks()).toBe(blocks);
      });
    }
  });

  it('returns inflate and deflate page lists unread, and stops on a writable buffer there', () => {
    const ram = new GuardedRam(1 << 20, G);
    const given: Buffer[] = [];
    const rig = bringUp(ram, (v) => given.push(v));
    // A page list naming every page, RAM or not: nothing is read or given back.
    ram.ram.fill(0xff, DATA - G, DATA - G + 1024);
    const h1 = rig.drivers[INFLATE_QUEUE]!.addChain([{ addr: DATA, len: 1024 }]);
    const h2 = rig.drivers[DEFLATE_QUEUE]!.addChain([{ addr: DATA, len: 1024 }]);
    rig.notify(INFLATE_QUEUE);
    rig.notify(DEFLATE_QUEUE);
    expect(rig.drivers[INFLATE_QUEUE]!.takeUsed()).toEqual([{ id: h1, len: 0 }]);
    expect(rig.drivers[DEFLATE_QUEUE]!.takeUsed()).toEqual([{ id: h2, len: 0 }]);
    expect(given).toEqual([]);
    expect(rig.dev.stats).toMatchObject({ inflateChains: 1, deflateChains: 1 });
    rig.drivers[DEFLATE_QUEUE]!.addChain([{ addr: DATA, len: 64, write: true }]);
    rig.notify(DEFLATE_QUEUE);
    expect(rig.mmio.lastError).toMatch(/^deflate chain \d+ has device-writable buffers/);
    expect(ram.canariesIntact()).toBe(true);
  });

  it('completes a report the host cannot honour and counts it', () => {
    const ram = new GuardedRam(1 << 20, G);
    const rig = bringUp(ram, () => {
      throw new Error('EPERM');
    });
    const head = rig.report.addChain([range(DATA, PAGE), range(DATA + 2 * PAGE, PAGE)]);
    rig.notify(REPORTING_QUEUE);
    expect(rig.report.takeUsed()).toEqual([{ id: head, len: 0 }]);
    expect(rig.mmio.deviceStatus & STATUS.DEVICE_NEEDS_RESET).toBe(0);
    expect(rig.dev.stats).toMatchObject({ reports: 1, rangesDiscarded: 0, discardErrors: 2 });
  });

  it('takes a bounded number of reports per notification and the rest on the next loop turn', async () => {
    const ram = new GuardedRam(1 << 20, G);
    const given: Buffer[] = [];
    const rig = bringUp(ram, (v) => given.push(v));
    for (let i = 0; i < 40; i++) rig.report.addChain([range(DATA + i * PAGE, PAGE)]);
    rig.notify(REPORTING_QUEUE);
    const first = rig.report.takeUsed().length;
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThan(40);
    await new Promise((r) => setTimeout(r, 50));
    expect(first + rig.report.takeUsed().length).toBe(40);
    expect(given.length).toBe(40);
  });

  it('refuses to give back anything that is not a view of its RAM file', () => {
    const ram = Buffer.alloc(8 * PAGE);
    const calls: [number, number][] = [];
    const discard = ramFileDiscarder(ram.subarray(PAGE), (o, l) => calls.push([o, l]));
    discard(ram.subarray(2 * PAGE, 3 * PAGE));
    expect(calls).toEqual([[PAGE, PAGE]]);
    expect(() => discard(Buffer.alloc(PAGE))).toThrow(/not guest RAM/);
    expect(() => discard(ram.subarray(0, PAGE))).toThrow(/not guest RAM/);
    // The native side checks again: unaligned or past the file is EINVAL, and nothing is touched.
    const native = new (kvmAddon().GuestRam)(4 * PAGE);
    expect(() => native.discard(100, PAGE)).toThrow(/EINVAL/);
    expect(() => native.discard(3 * PAGE, 2 * PAGE)).toThrow(/EINVAL/);
    expect(() => native.discard(0, 0)).toThrow(/EINVAL/);
  });

  it('survives 10,000 random hostile rings on all three queues, giving back only whole pages of RAM', () => {
    const RAM = 1 << 20;
    /** Where the three queues' rings are (0x4000 apart from G + 0x1000). */
    const RINGS = 0x10000;
    const rand = prng(0xba1_100e);
    const ram = new GuardedRam(RAM, G);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const u32 = () => Math.floor(rand() * 2 ** 32);
    const pageAddr = () => DATA + PAGE * Math.floor(rand() * 128);
    const addrOf = () => (rand() < 0.9 ? pageAddr() : pick([() => pageAddr() + 1 + Math.floor(rand() * 4095), () => G + RAM - PAGE, () => G - PAGE, () => u32(), () => 2 ** 60, () => 0])());
    const lenOf = () => (rand() < 0.9 ? PAGE * (1 + Math.floor(rand() * 32)) : pick([() => 0, () => Math.floor(rand() * 8192), () => 0xffff_f000, () => u32()])());
    const totals = { reports: 0, discarded: 0, pageLists: 0, broken: 0, planted: 0, quietAfterBreak: 0 };
    let given: Buffer[] = [];
    const wrong: string[] = [];
    const discard: DiscardRam = (v) => {
      // Every view given back must be whole pages inside guest RAM.
      const off = v.byteOffset - ram.ram.byteOffset;
      if (v.buffer !== ram.ram.buffer || off < 0 || off + v.length > RAM || v.length === 0 || v.length % PAGE !== 0 || off % PAGE !== 0) wrong.push(`${off}+${v.length}`);
      v.fill(0);
      given.push(v);
    };

    for (let iter = 0; iter < 10_000; iter++) {
      given = [];
      let features = 1n << VIRTIO_F_VERSION_1;
      for (const f of [VIRTIO_BALLOON_F_REPORTING, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX]) if (rand() < 0.7) features |= 1n << f;
      const size = 2 ** Math.floor(rand() * 7);
      const rig = bringUp(ram, discard, features, size);
      // Mostly the right direction for the queue (reports: writable), so chains get far enough to be used.
      rig.drivers.forEach((d, q) => d.scramble(rand, q === REPORTING_QUEUE, addrOf, lenOf));
      // Now and then a report that is malformed for certain at the head of the reporting queue.
      const planted = rand() < 0.15;
      if (planted) {
        rig.drivers[INFLATE_QUEUE]!.setAvailIdx(0);
        rig.drivers[DEFLATE_QUEUE]!.setAvailIdx(0);
        const d = rig.report;
        const head = ram.ram.readUInt16LE(d.availAddr - G + 4) % size;
        ram.ram.writeUInt16LE(head, d.availAddr - G + 4);
        d.writeDesc(d.descAddr, head, pageAddr() + pick([8, 512, 2048]), PAGE, VIRTQ_DESC_F_WRITE, 0);
        d.setAvailIdx(1 + Math.floor(rand() * size));
        totals.planted++;
      }
      let thrown: unknown;
      try {
        for (const q of [2, 0, 1, 2]) rig.notify(q);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, `iteration ${iter}`).toBeUndefined();
      const needsReset = rig.mmio.deviceStatus & STATUS.DEVICE_NEEDS_RESET;
      if (planted) {
        expect(needsReset, `iteration ${iter}`).toBe(STATUS.DEVICE_NEEDS_RESET);
        expect(rig.mmio.lastError, `iteration ${iter}`).toMatch(/^report chain \d+ range 0 \(4096 bytes\) is not whole/);
        expect(given, `iteration ${iter}`).toEqual([]);
      }
      if (needsReset) {
        const rings = Buffer.from(ram.ram.subarray(0, RINGS));
        const count = given.length;
        for (const q of [0, 1, 2]) rig.notify(q);
        expect(ram.ram.subarray(0, RINGS).equals(rings), `iteration ${iter}`).toBe(true);
        expect(given.length).toBe(count);
        totals.quietAfterBreak++;
        totals.broken++;
      }
      // The driver resets the device before the next ring layout; a pass deferred to the next loop turn then does nothing.
      rig.mmio.write(REG.STATUS, 4, 0);
      totals.reports += rig.dev.stats.reports;
      totals.discarded += given.length;
      totals.pageLists += rig.dev.stats.inflateChains + rig.dev.stats.deflateChains;
      if ((iter & 255) === 0) expect(ram.canariesIntact()).toBe(true);
      ram.ram.fill(0, 0, RINGS);
    }
    expect(ram.canariesIntact()).toBe(true);
    expect(wrong).toEqual([]);
    // Every outcome must have been exercised, or the test proves nothing.
    expect(totals.reports).toBeGreaterThan(1000);
    expect(totals.discarded).toBeGreaterThan(1000);
    expect(totals.pageLists).toBeGreaterThan(1000);
    expect(totals.broken).toBeGreaterThan(1000);
    expect(totals.planted).toBeGreaterThan(1000);
    expect(totals.quietAfterBreak).toBe(totals.broken);
  });
});
