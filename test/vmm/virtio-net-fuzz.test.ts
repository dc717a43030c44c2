import { describe, expect, it } from 'vitest';
import { VirtioNet } from '../../src/vmm/virtio/devices/net.js';
import { txHeaderProblem, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU, VIRTIO_NET_F_STATUS } from '../../src/vmm/virtio/devices/net-hdr.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 } from '../../src/vmm/virtio/devices/net-tap.js';
import { MAX_TX_CHAIN } from '../../src/vmm/virtio/devices/net-tx.js';
import { REG, STATUS, VIRTIO_F_VERSION_1, VirtioMmio } from '../../src/vmm/virtio/mmio.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../src/vmm/virtio/queue.js';
import { FakeTap, negotiateFeatures } from './helpers/net-rig.js';
import { GuardedRam, prng, setUpQueues } from './helpers/virtq-driver.js';

/**
 * virtio-net against a hostile guest, seeded like the queue fuzz (test/vmm/virtio-queue.test.ts): random
 * descriptor tables, rings, headers and features on both queues, with frames waiting in a fake tap. The host
 * must never throw, never touch memory outside guest RAM, never write a frame to the tap that breaks the
 * negotiated rules or is larger than a chain may be, and must stop the device when a chain is malformed: a
 * chain malformed for certain, planted on either queue, must mark the device broken with that queue's error,
 * and a broken device must touch neither its rings nor the tap again, whatever the guest notifies.
 */

const RAM = 256 * 1024;
const G = 0x100000;
/** The offloads, MRG_RXBUF, INDIRECT_DESC and EVENT_IDX. */
const OPTIONAL_BITS = [0n, 1n, 7n, 8n, 11n, 12n, 15n, 28n, 29n];

describe('virtio-net against a hostile guest', () => {
  it('survives 10,000 random hostile rings and headers on both queues', () => {
    const rand = prng(0x7e7_5eed);
    const ram = new GuardedRam(RAM, G);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const u32 = () => Math.floor(rand() * 2 ** 32);
    const addrOf = () =>
      rand() < 0.96 ? G + 0x10000 + Math.floor(rand() * 0x1f000) : pick([() => G + RAM - Math.floor(rand() * 64), () => G - 16, () => u32(), () => 2 ** 60, () => 0])();
    const lenOf = () =>
      rand() < 0.8 ? 12 + Math.floor(rand() * 2000) : pick([() => 0, () => Math.floor(rand() * 26), () => 0x10000 + Math.floor(rand() * 0x8000), () => 0xffff_ffff, () => u32()])();
    const totals = { txFrames: 0, txDropped: 0, rxFrames: 0, rxDropped: 0, broken: 0, malformedPlanted: [0, 0], quietAfterBreak: 0 };

    for (let iter = 0; iter < 10_000; iter++) {
      const tap = new FakeTap(pick([0, TUN_F_CSUM, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6]));
      const dev = new VirtioNet(tap, { mac: '52:54:00:00:00:02', mtu: pick([68, 576, 1500, 9000]) });
      let thrown: unknown;
      const mmio = new VirtioMmio(dev, ram.memory, () => {});
      const w = (off: number, v: number) => mmio.write(off, 4, v);
      // A random subset of what was offered, so every header rule meets both answers.
      let features = (1n << VIRTIO_F_VERSION_1) | (1n << VIRTIO_NET_F_MAC) | (1n << VIRTIO_NET_F_MTU) | (1n << VIRTIO_NET_F_STATUS);
      for (const f of OPTIONAL_BITS) if (rand() < 0.6) features |= 1n << f;
      features &= mmio.offeredFeatures;
      negotiateFeatures(mmio, features);
      const size = 2 ** Math.floor(rand() * 7);
      const drivers = setUpQueues(mmio, ram, 2, size, G + 0x1000, 0x4000);
      w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK);
      expect(mmio.deviceStatus & STATUS.DRIVER_OK).toBe(STATUS.DRIVER_OK);

      // Headers and frames: random bytes over the data area, with plausible headers at some buffer starts.
      const data = ram.ram.subarray(0x10000, 0x30000);
      data.fill(0);
      for (let i = 0; i < 64; i++) data.writeUInt32LE(u32(), Math.floor(rand() * (data.length - 4)));
      // Mostly the right direction for the queue (receive: writable), so chains get far enough to be used.
      drivers.forEach((d, q) => d.scramble(rand, q === 0, addrOf, lenOf));
      // Now and then a chain that is malformed for certain at the head of one queue: it must stop the device.
      const planted = rand() < 0.15 ? Math.floor(rand() * 2) : -1;
      if (planted >= 0) {
        // The other queue offers nothing, so the planted chain is the one that breaks the device.
        drivers[1 - planted]!.setAvailIdx(0);
        const d = drivers[planted]!;
        const head = ram.ram.readUInt16LE(d.availAddr - G + 4) % size;
        ram.ram.writeUInt16LE(head, d.availAddr - G + 4);
        const wrongWay = planted === 0 ? 0 : VIRTQ_DESC_F_WRITE;
        // A loop where the queue allows one, else a buffer the wrong way round for this queue.
        if (size > 1 && rand() < 0.5) d.writeDesc(d.descAddr, head, G + 0x10000, 64, VIRTQ_DESC_F_NEXT | (planted === 0 ? VIRTQ_DESC_F_WRITE : 0), head);
        else d.writeDesc(d.descAddr, head, G + 0x10000, 64, wrongWay, 0);
        d.setAvailIdx(1 + Math.floor(rand() * size));
        totals.malformedPlanted[planted]!++;
      }
      for (let i = 0; i < 1 + Math.floor(rand() * 8); i++) {
        const f = Buffer.alloc(12 + Math.floor(rand() * 3000));
        for (let k = 0; k < 16; k++) f[Math.floor(rand() * f.length)] = Math.floor(rand() * 256);
        f.writeUInt16LE(0, 10);
        tap.inbox.push(f);
      }
      try {
        [1, 0, 1, 0].forEach((q, n) => {
          if (n < 2 || rand() < 0.8) mmio.write(REG.QUEUE_NOTIFY, 4, q);
          tap.pump(4);
        });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeUndefined();
      const needsReset = mmio.deviceStatus & STATUS.DEVICE_NEEDS_RESET;
      if (planted >= 0) {
        expect(needsReset, `iteration ${iter}`).toBe(STATUS.DEVICE_NEEDS_RESET);
        // The loop is named with its queue; a buffer the wrong way round by the queue's role.
        const why = planted === 0 ? /^virtqueue net\[0\]: .*a loop|^receive chain \d+ has device-readable/ : /^virtqueue net\[1\]: .*a loop|^transmit chain \d+ has device-writable/;
        expect(mmio.lastError, `iteration ${iter}`).toMatch(why);
      }
      if (needsReset) {
        // Broken means stopped: more notifications and more frames change nothing the guest or the tap sees.
        const rings = Buffer.from(ram.ram.subarray(0, 0x30000));
        const before = { written: tap.written.length, waiting: tap.inbox.length + 1, stats: { ...dev.stats } };
        tap.inbox.push(Buffer.alloc(12 + 60));
        mmio.write(REG.QUEUE_NOTIFY, 4, 0);
        mmio.write(REG.QUEUE_NOTIFY, 4, 1);
        tap.pump(4);
        expect(ram.ram.subarray(0, 0x30000).equals(rings), `iteration ${iter}`).toBe(true);
        expect({ written: tap.written.length, waiting: tap.inbox.length, stats: { ...dev.stats } }, `iteration ${iter}`).toEqual(before);
        totals.quietAfterBreak++;
      }
      // A reset or a close afterwards, broken or not, must be just as quiet.
      if (rand() < 0.3) w(REG.STATUS, 0);
      dev.close();
      for (const frame of tap.written) {
        expect(frame.length).toBeLessThanOrEqual(MAX_TX_CHAIN);
        expect(txHeaderProblem(frame, frame.length, { features, mtu: dev.mtu })).toBeUndefined();
      }
      const s = dev.stats;
      totals.txFrames += s.txFrames;
      totals.txDropped += s.txInvalid + s.txOversized;
      totals.rxFrames += s.rxFrames;
      totals.rxDropped += s.rxInvalid + s.rxTooSmall;
      if (needsReset) totals.broken++;
      if ((iter & 255) === 0) expect(ram.canariesIntact()).toBe(true);
      ram.ram.fill(0, 0, 0x10000);
    }
    expect(ram.canariesIntact()).toBe(true);
    // Every outcome must have been exercised, or the test proves nothing.
    expect(totals.txFrames).toBeGreaterThan(500);
    expect(totals.txDropped).toBeGreaterThan(500);
    expect(totals.rxFrames).toBeGreaterThan(500);
    expect(totals.rxDropped).toBeGreaterThan(500);
    expect(totals.broken).toBeGreaterThan(1000);
    expect(totals.quietAfterBreak).toBe(totals.broken);
    // Both queues get their share of certain breakage.
    expect(totals.malformedPlanted[0]).toBeGreaterThan(500);
    expect(totals.malformedPlanted[1]).toBeGreaterThan(500);
  });
});
