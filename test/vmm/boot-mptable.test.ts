import { describe, expect, it } from 'vitest';
import { MAX_VCPUS, buildMpTable, writeMpTable } from '../../src/vmm/boot/mptable.js';
import { EBDA_END, IOAPIC_ADDR, LAPIC_ADDR, MPTABLE_START } from '../../src/vmm/layout.js';

/**
 * An MP spec 1.4 reader written from the specification, the way Linux's mpparse walks the table:
 * scan for "_MP_" on 16-byte boundaries, check both checksums, follow physptr, walk entries by type.
 */
function parseMp(ram: Uint8Array, scanStart: number, scanLen: number) {
  const buf = Buffer.from(ram.buffer, ram.byteOffset, ram.byteLength);
  const sum = (a: number, n: number): number => {
    let s = 0;
    for (let i = 0; i < n; i++) s += buf[a + i]!;
    return s & 0xff;
  };
  let fp = -1;
  for (let a = scanStart; a < scanStart + scanLen; a += 16) {
    if (buf.toString('latin1', a, a + 4) === '_MP_' && buf[a + 8] === 1 && sum(a, 16) === 0 && (buf[a + 9] === 1 || buf[a + 9] === 4)) {
      fp = a;
      break;
    }
  }
  if (fp < 0) throw new Error('no floating pointer');
  const t = buf.readUInt32LE(fp + 4);
  if (buf[fp + 11] !== 0) throw new Error('default configuration requested');
  if (buf.toString('latin1', t, t + 4) !== 'PCMP') throw new Error('bad table signature');
  const len = buf.readUInt16LE(t + 4);
  if (sum(t, len) !== 0) throw new Error('table checksum');
  const count = buf.readUInt16LE(t + 34);
  const lapic = buf.readUInt32LE(t + 36);
  const cpus: { id: number; flags: number }[] = [];
  const buses: string[] = [];
  const ioapics: { id: number; addr: number; flags: number }[] = [];
  const ints: { type: number; bus: number; irq: number; apic: number; pin: number }[] = [];
  const lints: { type: number; apic: number; pin: number }[] = [];
  let p = t + 44;
  for (let i = 0; i < count; i++) {
    const type = buf[p]!;
    if (type === 0) {
      cpus.push({ id: buf[p + 1]!, flags: buf[p + 3]! });
      p += 20;
    } else if (type === 1) {
      buses.push(buf.toString('latin1', p + 2, p + 8));
      p += 8;
    } else if (type === 2) {
      ioapics.push({ id: buf[p + 1]!, flags: buf[p + 3]!, addr: buf.readUInt32LE(p + 4) });
      p += 8;
    } else if (type === 3) {
      ints.push({ type: buf[p + 1]!, bus: buf[p + 4]!, irq: buf[p + 5]!, apic: buf[p + 6]!, pin: buf[p + 7]! });
      p += 8;
    } else if (type === 4) {
      lints.push({ type: buf[p + 1]!, apic: buf[p + 6]!, pin: buf[p + 7]! });
      p += 8;
    } else throw new Error(`unknown entry type ${type}`);
  }
  if (p !== t + len) throw new Error(`entries end at ${p}, table length says ${t + len}`);
  return { fp, table: t, end: t + len, lapic, cpus, buses, ioapics, ints, lints };
}

describe('MP table', () => {
  it('is found where Linux scans and describes every vCPU, the ISA bus and the IOAPIC', () => {
    for (const n of [1, 2, 5, MAX_VCPUS]) {
      const ram = new Uint8Array(EBDA_END + 0x1000);
      writeMpTable(ram, n);
      const mp = parseMp(ram, 639 * 0x400, 0x400);
      expect(mp.fp).toBe(MPTABLE_START);
      expect(mp.end).toBeLessThanOrEqual(EBDA_END);
      expect(mp.lapic).toBe(LAPIC_ADDR);
      expect(mp.cpus.map((c) => c.id)).toEqual(Array.from({ length: n }, (_, i) => i));
      expect(mp.cpus.every((c) => (c.flags & 1) === 1)).toBe(true);
      expect(mp.cpus.filter((c) => (c.flags & 2) !== 0).map((c) => c.id)).toEqual([0]);
      expect(mp.buses).toEqual(['ISA   ']);
      expect(mp.ioapics).toHaveLength(1);
      const io = mp.ioapics[0]!;
      expect(io.addr).toBe(IOAPIC_ADDR);
      expect(io.flags & 1).toBe(1);
      expect(mp.cpus.some((c) => c.id === io.id)).toBe(false);
      expect(mp.ints.map((i) => i.irq)).toEqual(Array.from({ length: 24 }, (_, i) => i));
      expect(mp.ints.every((i) => i.type === 0 && i.bus === 0 && i.apic === io.id && i.pin === i.irq)).toBe(true);
      expect(mp.lints).toEqual([
        { type: 3, apic: 0, pin: 0 },
        { type: 1, apic: 0xff, pin: 1 },
      ]);
    }
  });

  it('has checksums that catch any single corrupted byte', () => {
    const table = buildMpTable(4);
    for (const off of [0, 4, 9, 20, 50, table.length - 1]) {
      const ram = new Uint8Array(EBDA_END);
      ram.set(table, MPTABLE_START);
      ram[MPTABLE_START + off]! ^= 0x10;
      expect(() => parseMp(ram, MPTABLE_START, 0x400)).toThrow();
    }
  });

  it('rejects vCPU counts it cannot describe', () => {
    expect(() => buildMpTable(0)).toThrow(/1 to/);
    expect(() => buildMpTable(MAX_VCPUS + 1)).toThrow(/1 to/);
    expect(() => buildMpTable(1.5)).toThrow(/1 to/);
  });
});
