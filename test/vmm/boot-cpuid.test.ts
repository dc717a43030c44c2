import { closeSync, existsSync, openSync, readSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cpuVendor, vcpuCpuid, type CpuidEntry } from '../../src/vmm/boot/cpuid.js';

/**
 * The input is this host's real CPUID (through /dev/cpu/0/cpuid when the cpuid driver is loaded),
 * shaped the way KVM_GET_SUPPORTED_CPUID lists it, plus the KVM signature leaf KVM adds.
 */
function hostLeaves(): CpuidEntry[] {
  const dev = '/dev/cpu/0/cpuid';
  const read = (fd: number, leaf: number, sub: number): CpuidEntry => {
    const b = Buffer.alloc(16);
    readSync(fd, b, 0, 16, leaf + sub * 2 ** 32);
    return { function: leaf, index: sub, flags: 0, eax: b.readUInt32LE(0), ebx: b.readUInt32LE(4), ecx: b.readUInt32LE(8), edx: b.readUInt32LE(12) };
  };
  const out: CpuidEntry[] = [];
  if (existsSync(dev)) {
    const fd = openSync(dev, 'r');
    try {
      const max = read(fd, 0, 0).eax;
      for (let leaf = 0; leaf <= Math.min(max, 0x1f); leaf++) {
        const indexed = [4, 7, 0xb, 0xd, 0x1f].includes(leaf);
        for (let sub = 0; sub < (indexed ? 4 : 1); sub++) out.push({ ...read(fd, leaf, sub), flags: indexed ? 1 : 0 });
      }
      const maxExt = read(fd, 0x8000_0000, 0).eax;
      for (let leaf = 0x8000_0000; leaf <= Math.min(maxExt, 0x8000_0020); leaf++) out.push(read(fd, leaf, 0));
    } finally {
      closeSync(fd);
    }
  } else {
    // Without the cpuid driver: a GenuineIntel-shaped list with the leaves the transform touches.
    out.push({ function: 0, index: 0, flags: 0, eax: 0x1f, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 });
    out.push({ function: 1, index: 0, flags: 0, eax: 0x906ea, ebx: 0x00100800, ecx: 0x7ffafbff, edx: 0xbfebfbff });
    for (let sub = 0; sub < 3; sub++) out.push({ function: 0xb, index: sub, flags: 1, eax: 1, ebx: 2, ecx: 0x100 | sub, edx: 7 });
    out.push({ function: 6, index: 0, flags: 0, eax: 0x77, ebx: 2, ecx: 9, edx: 0 });
  }
  out.push({ function: 0x4000_0000, index: 0, flags: 0, eax: 0x4000_0001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d });
  return out;
}

const find = (l: CpuidEntry[], f: number, i = 0): CpuidEntry | undefined => l.find((e) => e.function === f && e.index === i);

describe('per-vCPU CPUID', () => {
  const host = hostLeaves();
  const snapshot = JSON.stringify(host);

  it('gives every vCPU its own APIC id and the package its CPU count', () => {
    const n = 4;
    for (let cpu = 0; cpu < n; cpu++) {
      const l = vcpuCpuid(host, cpu, n);
      expect(l).toHaveLength(host.length);
      const leaf1 = find(l, 1)!;
      expect(leaf1.ebx >>> 24).toBe(cpu);
      expect((leaf1.ebx >>> 16) & 0xff).toBe(n);
      expect(((leaf1.edx >>> 28) & 1) === 1).toBe(true);
      expect(leaf1.ecx >>> 31).toBe(1);
      expect((leaf1.ecx >>> 5) & 1).toBe(0);
      expect((leaf1.ecx >>> 3) & 1).toBe(0);
      for (const e of l.filter((x) => x.function === 0xb || x.function === 0x1f)) {
        expect(e.edx).toBe(cpu);
        const type = (e.ecx >>> 8) & 0xff;
        if (e.index === 0) expect([type, e.ebx]).toEqual([1, 1]);
        else if (e.index === 1) {
          expect(type).toBe(2);
          expect(e.ebx).toBe(n);
          expect(1 << e.eax).toBeGreaterThanOrEqual(n);
        } else expect(type).toBe(0);
      }
      expect(find(l, 0x4000_0000)).toEqual(find(host, 0x4000_0000));
      const pm = find(l, 6);
      if (pm) expect([pm.eax, pm.ebx, pm.ecx, pm.edx]).toEqual([0, 0, 0, 0]);
      for (const e of l) for (const r of [e.eax, e.ebx, e.ecx, e.edx]) expect(r).toBeGreaterThanOrEqual(0);
    }
    expect(JSON.stringify(host)).toBe(snapshot);
  });

  it('a single vCPU does not claim hyper-threading', () => {
    const leaf1 = find(vcpuCpuid(host, 0, 1), 1)!;
    expect((leaf1.edx >>> 28) & 1).toBe(0);
    expect((leaf1.ebx >>> 16) & 0xff).toBe(1);
  });

  it('knows the vendor and rejects impossible indexes', () => {
    expect(['intel', 'amd', 'other']).toContain(cpuVendor(host));
    expect(() => vcpuCpuid(host, 2, 2)).toThrow(/out of range/);
    expect(() => vcpuCpuid(host, 0, 0)).toThrow(/out of range/);
    expect(() => vcpuCpuid(host, 0, 256)).toThrow(/out of range/);
  });
});
