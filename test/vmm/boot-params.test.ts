import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildCmdline } from '../../src/vmm/boot/cmdline.js';
import { directBoot } from '../../src/vmm/boot/direct-boot.js';
import { gdtEntry, segmentFromGdt } from '../../src/vmm/boot/params.js';
import { CMDLINE_START, E820_PRAM, E820_RAM, MMIO_GAP_START, PAGE_SIZE, e820Map, pmemRange, virtioMmioSlot } from '../../src/vmm/layout.js';
import { buildElf, pvhNote } from './helpers/elf-builder.js';

const MiB = 1024 * 1024;
const tmp = mkdtempSync(path.join(tmpdir(), 'vrun-boot-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const kernelFile = path.join(tmp, 'vmlinux');
writeFileSync(
  kernelFile,
  buildElf({
    entry: 0x1000000,
    segments: [
      { paddr: 0x1000000, data: Buffer.alloc(0x4000, 0x90) },
      { paddr: 0x1800000, data: Buffer.alloc(0x100, 0x11), memSize: 0x200000 },
    ],
    notes: [pvhNote(0x1000200)],
  }),
);
const noPvhKernel = path.join(tmp, 'vmlinux-nopvh');
writeFileSync(noPvhKernel, buildElf({ entry: 0x1000000, segments: [{ paddr: 0x1000000, data: Buffer.alloc(0x4000, 0x90) }] }));
const initrdFile = path.join(tmp, 'initrd');
const initrdBytes = Buffer.alloc(3 * MiB + 123);
for (let i = 0; i < initrdBytes.length; i++) initrdBytes[i] = (i * 7) & 0xff;
writeFileSync(initrdFile, initrdBytes);

const cmdline = buildCmdline({ virtio: [virtioMmioSlot(0)], extra: 'init=/init' });

function cstring(ram: Uint8Array, addr: number): string {
  const end = ram.indexOf(0, addr);
  return Buffer.from(ram.subarray(addr, end)).toString('latin1');
}

describe('direct boot structures', () => {
  it('PVH: start info v1 with command line, initrd module and the e820 map; vCPU in 32-bit protected mode', () => {
    const mem = 128 * MiB;
    const ram = new Uint8Array(mem);
    const res = directBoot(ram, { kernel: kernelFile, initrd: initrdFile, cmdline: cmdline.toBytes(), vcpus: 2, memBytes: mem });
    expect(res.cpu.protocol).toBe('pvh');
    const b = Buffer.from(ram.buffer);
    const si = res.cpu.regs.rbx;
    expect(b.readUInt32LE(si)).toBe(0x336ec578);
    expect(b.readUInt32LE(si + 4)).toBe(1);
    expect(b.readUInt32LE(si + 12)).toBe(1);
    const mod = Number(b.readBigUInt64LE(si + 16));
    const initrdAddr = Number(b.readBigUInt64LE(mod));
    const initrdSize = Number(b.readBigUInt64LE(mod + 8));
    expect(initrdSize).toBe(initrdBytes.length);
    expect(Buffer.from(ram.subarray(initrdAddr, initrdAddr + initrdSize)).equals(initrdBytes)).toBe(true);
    expect(initrdAddr % PAGE_SIZE).toBe(0);
    expect(initrdAddr).toBeGreaterThanOrEqual(res.kernel.end);
    expect(cstring(ram, Number(b.readBigUInt64LE(si + 24)))).toBe(cmdline.toString());
    const mm = Number(b.readBigUInt64LE(si + 40));
    const n = b.readUInt32LE(si + 48);
    const map = Array.from({ length: n }, (_, i) => ({
      addr: Number(b.readBigUInt64LE(mm + i * 24)),
      size: Number(b.readBigUInt64LE(mm + i * 24 + 8)),
      type: b.readUInt32LE(mm + i * 24 + 16),
    }));
    expect(map).toEqual(e820Map(mem));
    // the structures do not overlap each other
    expect(mm).toBeGreaterThanOrEqual(mod + 32);
    expect(mod).toBeGreaterThanOrEqual(si + 56);

    const { regs, sregs } = res.cpu;
    expect(regs.rip).toBe(0x1000200);
    expect(sregs.cr0 & 1).toBe(1);
    expect(sregs.cr0 & 0x8000_0000).toBe(0);
    expect(sregs.cr4).toBe(0);
    expect(sregs.efer).toBe(0);
    expect(regs.rflags & 0x200).toBe(0);
    expect(sregs.cs).toMatchObject({ base: 0, limit: 0xffff_ffff, db: 1, l: 0, s: 1, present: 1, type: 0xb });
    for (const seg of [sregs.ds, sregs.es, sregs.ss]) expect(seg).toMatchObject({ base: 0, limit: 0xffff_ffff, db: 1, type: 3, present: 1 });
    expect(sregs.tr).toMatchObject({ limit: 0x67, type: 0xb, s: 0, present: 1 });
    // the GDT in guest memory decodes to the same segments
    const gdt = (i: number): bigint => b.readBigUInt64LE(sregs.gdt.base + i * 8);
    expect(segmentFromGdt(gdt(sregs.cs.selector / 8), sregs.cs.selector / 8)).toEqual(sregs.cs);
    expect(segmentFromGdt(gdt(sregs.tr.selector / 8), sregs.tr.selector / 8)).toEqual(sregs.tr);
    // kernel bytes are in place, the MP table too
    expect(ram[0x1000000]).toBe(0x90);
    expect(Buffer.from(ram.subarray(0x9fc00, 0x9fc04)).toString()).toBe('_MP_');
  });

  it.each(['pvh', 'linux64'] as const)('%s: a persistent-memory range reaches the memory map as type 12 (the userland image)', (protocol) => {
    const mem = 96 * MiB;
    const ram = new Uint8Array(mem);
    const pmem = pmemRange(mem, 120 * MiB);
    const res = directBoot(ram, { kernel: kernelFile, cmdline: cmdline.toBytes(), vcpus: 1, memBytes: mem, protocol, pmem });
    const b = Buffer.from(ram.buffer);
    // PVH: hvm_start_info's memmap (24-byte entries); linux64: the zero page's e820 table (20-byte entries).
    const [at, n, stride] =
      protocol === 'pvh'
        ? [Number(b.readBigUInt64LE(res.cpu.regs.rbx + 40)), b.readUInt32LE(res.cpu.regs.rbx + 48), 24]
        : [res.cpu.regs.rsi + 0x2d0, b[res.cpu.regs.rsi + 0x1e8]!, 20];
    const map = Array.from({ length: n }, (_, i) => ({
      addr: Number(b.readBigUInt64LE(at + i * stride)),
      size: Number(b.readBigUInt64LE(at + i * stride + 8)),
      type: b.readUInt32LE(at + i * stride + 16),
    }));
    expect(map).toEqual(e820Map(mem, pmem));
    expect(map.filter((e) => e.type === E820_PRAM)).toEqual([{ addr: 4096 * MiB, size: 120 * MiB, type: E820_PRAM }]);
  });

  it('linux64: zero page with boot flag, HdrS, loader type, command line, ramdisk and e820; long mode with identity paging', () => {
    const mem = 96 * MiB;
    const ram = new Uint8Array(mem);
    const res = directBoot(ram, { kernel: kernelFile, initrd: initrdFile, cmdline: cmdline.toBytes(), vcpus: 1, memBytes: mem, protocol: 'linux64' });
    const b = Buffer.from(ram.buffer);
    const zp = res.cpu.regs.rsi;
    expect(b.readUInt16LE(zp + 0x1fe)).toBe(0xaa55);
    expect(b.toString('latin1', zp + 0x202, zp + 0x206)).toBe('HdrS');
    expect(b[zp + 0x210]).toBe(0xff);
    const cmdPtr = b.readUInt32LE(zp + 0x228);
    expect(cmdPtr).toBe(CMDLINE_START);
    expect(cstring(ram, cmdPtr)).toBe(cmdline.toString());
    expect(b.readUInt32LE(zp + 0x238)).toBe(cmdline.toString().length);
    const rd = b.readUInt32LE(zp + 0x218);
    expect(b.readUInt32LE(zp + 0x21c)).toBe(initrdBytes.length);
    expect(Buffer.from(ram.subarray(rd, rd + initrdBytes.length)).equals(initrdBytes)).toBe(true);
    expect(rd + initrdBytes.length).toBeLessThanOrEqual(mem);
    const n = b[zp + 0x1e8]!;
    const e820 = Array.from({ length: n }, (_, i) => ({
      addr: Number(b.readBigUInt64LE(zp + 0x2d0 + i * 20)),
      size: Number(b.readBigUInt64LE(zp + 0x2d0 + i * 20 + 8)),
      type: b.readUInt32LE(zp + 0x2d0 + i * 20 + 16),
    }));
    expect(e820).toEqual(e820Map(mem));
    expect(e820.filter((e) => e.type === E820_RAM).every((e) => e.addr + e.size <= MMIO_GAP_START)).toBe(true);

    const { regs, sregs } = res.cpu;
    expect(regs.rip).toBe(0x1000000);
    expect(sregs.efer & 0x500).toBe(0x500);
    expect(sregs.cr0).toBeGreaterThan(0);
    expect((sregs.cr0 & 0x8000_0001) >>> 0).toBe(0x8000_0001);
    expect(sregs.cr4 & 0x20).toBe(0x20);
    expect(sregs.cs).toMatchObject({ l: 1, db: 0, present: 1, type: 0xb });
    // walk the page tables for a few addresses: identity mapped, 2 MiB pages
    for (const va of [0, 0x7000, 0x1000000, 0x3fffffff]) {
      const pml4e = b.readBigUInt64LE(sregs.cr3 + (Math.floor(va / 2 ** 39) & 0x1ff) * 8);
      expect(pml4e & 1n).toBe(1n);
      const pdpte = b.readBigUInt64LE(Number(pml4e & ~0xfffn) + (Math.floor(va / 2 ** 30) & 0x1ff) * 8);
      expect(pdpte & 1n).toBe(1n);
      const pde = b.readBigUInt64LE(Number(pdpte & ~0xfffn) + ((va >>> 21) & 0x1ff) * 8);
      expect(pde & 0x81n).toBe(0x81n);
      expect(Number(pde & ~0x1fffffn) + (va & 0x1fffff)).toBe(va);
    }
  });

  it('falls back to linux64 without a PVH note, and refuses PVH when asked for it', () => {
    const mem = 64 * MiB;
    const res = directBoot(new Uint8Array(mem), { kernel: noPvhKernel, cmdline: cmdline.toBytes(), vcpus: 1, memBytes: mem });
    expect(res.cpu.protocol).toBe('linux64');
    expect(() => directBoot(new Uint8Array(mem), { kernel: noPvhKernel, cmdline: cmdline.toBytes(), vcpus: 1, memBytes: mem, protocol: 'pvh' })).toThrow(
      /no PVH entry note/,
    );
  });

  it('reports memory below the minimum, a missing initrd and too many vCPUs clearly', () => {
    const small = 32 * MiB;
    expect(() => directBoot(new Uint8Array(small), { kernel: kernelFile, initrd: initrdFile, cmdline: cmdline.toBytes(), vcpus: 1, memBytes: small })).toThrow(
      /too small/,
    );
    const mem = 128 * MiB;
    expect(() =>
      directBoot(new Uint8Array(mem), { kernel: kernelFile, initrd: path.join(tmp, 'nope'), cmdline: cmdline.toBytes(), vcpus: 1, memBytes: mem }),
    ).toThrow(/initrd .*nope.* cannot be opened/);
    expect(() => directBoot(new Uint8Array(mem), { kernel: kernelFile, cmdline: cmdline.toBytes(), vcpus: 33, memBytes: mem })).toThrow(/vCPUs/);
  });

  it('boots the guest image kernel when it is present on this machine', () => {
    const manifest = '/var/lib/vrun/guest-image/guest-image.json';
    const kernel = existsSync(manifest) ? (JSON.parse(readFileSync(manifest, 'utf8')) as { kernel: string }).kernel : kernelFile;
    const mem = 256 * MiB;
    const ram = new Uint8Array(mem);
    const res = directBoot(ram, { kernel, initrd: initrdFile, cmdline: cmdline.toBytes(), vcpus: 2, memBytes: mem });
    expect(res.cpu.protocol).toBe('pvh');
    expect(res.cpu.regs.rip).toBe(res.kernel.pvhEntry);
    expect(res.initrd!.addr).toBeGreaterThanOrEqual(res.kernel.end);
  });
});

describe('GDT encoding', () => {
  it('round-trips base, limit and flags through the descriptor layout', () => {
    const cases: [number, number, number][] = [
      [0xc09b, 0, 0xfffff],
      [0xa09b, 0, 0xfffff],
      [0x008b, 0x12345678, 0x67],
      [0x4093, 0xabcdef00, 0x54321],
    ];
    for (const [flags, base, limit] of cases) {
      const seg = segmentFromGdt(gdtEntry(flags, base, limit), 3);
      expect(seg.base).toBe(base);
      expect(seg.limit).toBe(flags & 0x8000 ? limit * 4096 + 4095 : limit);
      expect(seg.type).toBe(flags & 0xf);
      expect(seg.present).toBe((flags >> 7) & 1);
      expect(seg.l).toBe((flags >> 13) & 1);
      expect(seg.db).toBe((flags >> 14) & 1);
      expect(seg.selector).toBe(24);
    }
  });
});
