import { describe, expect, it } from 'vitest';
import {
  E820_PRAM,
  E820_RAM,
  HIMEM_START,
  IOAPIC_ADDR,
  LAPIC_ADDR,
  MAX_VIRTIO_DEVICES,
  MMIO_GAP_END,
  MMIO_GAP_START,
  MPTABLE_START,
  PAGE_SIZE,
  SERIAL_IRQ,
  e820Map,
  initrdPlacement,
  pmemRange,
  ramRegions,
  virtioMmioSlot,
} from '../../src/vmm/layout.js';

const MiB = 1024 * 1024;
const sizes = [2 * MiB, 64 * MiB, 512 * MiB, 3328 * MiB, 3329 * MiB, 8192 * MiB];

describe('memory layout', () => {
  it('puts a persistent-memory range above RAM and 4 GiB on a 128 MiB boundary, typed 12 after the RAM entries', () => {
    for (const mem of sizes) {
      const pm = pmemRange(mem, 120 * MiB);
      const ramEnd = Math.max(...ramRegions(mem).map((r) => r.guestAddr + r.size));
      expect(pm.addr).toBeGreaterThanOrEqual(Math.max(MMIO_GAP_END, ramEnd));
      expect(pm.addr % (128 * MiB)).toBe(0);
      expect(pm.addr - Math.max(MMIO_GAP_END, ramEnd)).toBeLessThan(128 * MiB);
      const map = e820Map(mem, pm);
      expect(map.slice(0, -1)).toEqual(e820Map(mem));
      expect(map[map.length - 1]).toEqual({ addr: pm.addr, size: 120 * MiB, type: E820_PRAM });
    }
    expect(() => pmemRange(512 * MiB, 0)).toThrow(/persistent memory of 0 bytes/);
    expect(() => pmemRange(512 * MiB, 4097)).toThrow(/multiple of 4096/);
  });

  it('e820 entries are sorted, disjoint, page-sane and cover exactly the guest RAM', () => {
    for (const mem of sizes) {
      const map = e820Map(mem);
      for (let i = 1; i < map.length; i++) expect(map[i]!.addr).toBeGreaterThanOrEqual(map[i - 1]!.addr + map[i - 1]!.size);
      for (const e of map) expect(e.size).toBeGreaterThan(0);
      const ram = map.filter((e) => e.type === E820_RAM);
      // RAM below 1 MiB stops where the MP table's reserved block begins; the legacy hole is not RAM.
      const total = ram.reduce((a, e) => a + e.size, 0);
      expect(total).toBe(mem - (HIMEM_START - MPTABLE_START));
      for (const e of ram) {
        const end = e.addr + e.size;
        // no RAM inside the MMIO gap
        expect(end <= MMIO_GAP_START || e.addr >= MMIO_GAP_END).toBe(true);
      }
      const regions = ramRegions(mem);
      expect(regions.reduce((a, r) => a + r.size, 0)).toBe(mem);
      expect(regions.every((r) => r.fileOffset + r.size <= mem)).toBe(true);
    }
  });

  it('places RAM above 4 GiB only when it does not fit under the gap', () => {
    expect(ramRegions(3328 * MiB)).toHaveLength(1);
    const two = ramRegions(3329 * MiB);
    expect(two[1]).toEqual({ guestAddr: MMIO_GAP_END, size: MiB, fileOffset: MMIO_GAP_START });
  });

  it('keeps the IOAPIC, LAPIC and every virtio window inside the MMIO gap, disjoint', () => {
    const windows = Array.from({ length: MAX_VIRTIO_DEVICES }, (_, i) => virtioMmioSlot(i));
    for (const w of windows) {
      expect(w.addr).toBeGreaterThanOrEqual(MMIO_GAP_START);
      expect(w.addr + w.size).toBeLessThanOrEqual(IOAPIC_ADDR);
      expect(w.irq).not.toBe(SERIAL_IRQ);
      expect(w.irq).toBeLessThan(24);
    }
    expect(new Set(windows.map((w) => w.irq)).size).toBe(windows.length);
    expect(LAPIC_ADDR).toBeGreaterThan(IOAPIC_ADDR);
    expect(() => virtioMmioSlot(MAX_VIRTIO_DEVICES)).toThrow(/at most/);
    expect(() => virtioMmioSlot(-1)).toThrow(/out of range/);
  });

  it('puts the initrd as high as possible, page aligned, above the kernel', () => {
    const kernelEnd = 0x1c00000 + 123;
    for (const mem of [256 * MiB, 3328 * MiB, 8192 * MiB]) {
      const size = 40 * MiB + 17;
      const addr = initrdPlacement(mem, kernelEnd, size);
      expect(addr % PAGE_SIZE).toBe(0);
      expect(addr + size).toBeLessThanOrEqual(Math.min(mem, MMIO_GAP_START));
      expect(Math.min(mem, MMIO_GAP_START) - (addr + size)).toBeLessThan(PAGE_SIZE);
      expect(addr).toBeGreaterThan(kernelEnd);
    }
    expect(() => initrdPlacement(64 * MiB, kernelEnd, 40 * MiB)).toThrow(/too small .* at least \d+ MiB/);
    expect(() => initrdPlacement(256 * MiB, kernelEnd, 0)).toThrow(/not a positive size/);
  });

  it('rejects memory sizes that are not whole pages or below 1 MiB', () => {
    expect(() => e820Map(MiB + 1)).toThrow(/multiple/);
    expect(() => e820Map(512 * 1024)).toThrow(/below the 1 MiB/);
    expect(() => e820Map(-4096)).toThrow(/guest memory/);
  });
});
