import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { bufferSource, loadElfKernel, openFileSource, parseElfKernel } from '../../src/vmm/boot/elf.js';
import { VrunError } from '../../src/common/errors.js';
import { buildElf, phdrOffset, pvhNote } from './helpers/elf-builder.js';

const MiB = 1024 * 1024;
const tmp = mkdtempSync(path.join(tmpdir(), 'vrun-elf-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** The guest image's vmlinux files, or, on a machine without them, a kernel-shaped ELF written to disk. */
function kernelsOnDisk(): string[] {
  const root = '/var/lib/vrun/guest-image';
  const found = existsSync(root)
    ? readdirSync(root)
        .map((d) => path.join(root, d, 'vmlinux'))
        .filter((f) => existsSync(f))
    : [];
  if (found.length > 0) return found.slice(0, 2);
  const file = path.join(tmp, 'vmlinux');
  writeFileSync(
    file,
    buildElf({
      entry: 0x1000000,
      segments: [
        { paddr: 0x1000000, data: pattern(0x3000, 1) },
        { paddr: 0x1400000, data: pattern(0x800, 2), memSize: 0x5000 },
      ],
      notes: [{ name: 'GNU', type: 3, desc: pattern(20, 3) }, pvhNote(0x1000600)],
    }),
  );
  return [file];
}

/** readelf (binutils) as the independent parser of the same file. */
function readelfFacts(file: string): { entry: number; loads: { offset: number; paddr: number; filesz: number; memsz: number }[]; pvh: number | undefined } {
  const header = execFileSync('readelf', ['-hW', file], { encoding: 'utf8' });
  const entry = Number(/Entry point address:\s+(0x[0-9a-f]+)/.exec(header)![1]);
  const prog = execFileSync('readelf', ['-lW', file], { encoding: 'utf8' });
  const loads = [...prog.matchAll(/^\s*LOAD\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)\s+(0x[0-9a-f]+)/gm)].map((m) => ({
    offset: Number(m[1]),
    paddr: Number(m[3]),
    filesz: Number(m[4]),
    memsz: Number(m[5]),
  }));
  const notes = execFileSync('readelf', ['-nW', file], { encoding: 'utf8' });
  const xen = /Xen\s+0x[0-9a-f]+\s+(?:Unknown note type: \(0x00000012\)|\S*PHYS32\S*)\s+description data: ([0-9a-f ]+)/.exec(notes);
  let pvh: number | undefined;
  if (xen) {
    const bytes = xen[1]!.trim().split(/\s+/).map((h) => parseInt(h, 16));
    pvh = bytes.reduce((acc, b, i) => acc + b * 2 ** (8 * i), 0);
  }
  return { entry, loads: loads.filter((l) => l.memsz > 0).sort((a, b) => a.paddr - b.paddr), pvh };
}

describe('ELF kernel parsing', () => {
  for (const file of kernelsOnDisk()) {
    it(`agrees with readelf on ${file} and loads its bytes`, () => {
      const facts = readelfFacts(file);
      const src = openFileSource(file);
      try {
        const k = parseElfKernel(src, 512 * MiB);
        expect(k.entry64).toBe(facts.entry);
        expect(k.pvhEntry).toBe(facts.pvh);
        expect(k.segments.map((s) => ({ offset: s.offset, paddr: s.paddr, filesz: s.fileSize, memsz: s.memSize }))).toEqual(facts.loads);
        const ram = new Uint8Array(k.end + MiB).fill(0xcc);
        loadElfKernel(k, src, ram);
        const fileBytes = execFileSync('cat', [file], { maxBuffer: 1 << 30 });
        for (const s of k.segments) {
          const a = Buffer.from(ram.subarray(s.paddr, s.paddr + s.fileSize));
          expect(a.equals(fileBytes.subarray(s.offset, s.offset + s.fileSize))).toBe(true);
          // .bss is zeroed, bytes past the segment untouched
          expect(ram.subarray(s.paddr + s.fileSize, s.paddr + s.memSize).every((b) => b === 0)).toBe(true);
        }
        expect(ram[k.end]).toBe(0xcc);
      } finally {
        src.close();
      }
    });
  }

  it('reads the PVH entry as a 4- or 8-byte note and ignores other notes', () => {
    for (const width of [4, 8] as const) {
      const elf = buildElf({
        entry: 0x200000,
        segments: [{ paddr: 0x200000, data: pattern(0x2000, 7) }],
        notes: [{ name: 'Linux', type: 18, desc: pattern(8, 1) }, pvhNote(0x200100, width)],
      });
      const k = parseElfKernel(bufferSource('k', elf), 64 * MiB);
      expect(k.pvhEntry).toBe(0x200100);
      expect(k.entry64).toBe(0x200000);
    }
    const noPvh = buildElf({ entry: 0x200000, segments: [{ paddr: 0x200000, data: pattern(16, 1) }] });
    expect(parseElfKernel(bufferSource('k', noPvh), 64 * MiB).pvhEntry).toBeUndefined();
  });

  it('names the file when the kernel is missing or not ELF', () => {
    expect(() => openFileSource(path.join(tmp, 'absent-vmlinux'))).toThrow(/absent-vmlinux.*cannot be opened/);
    const junk = path.join(tmp, 'bzImage-like');
    writeFileSync(junk, Buffer.concat([Buffer.from('MZ'), pattern(4096, 9)]));
    const src = openFileSource(junk);
    try {
      expect(() => parseElfKernel(src, 64 * MiB)).toThrow(new RegExp(`${junk}.*no ELF magic`));
    } finally {
      src.close();
    }
    expect(() => openFileSource(tmp)).toThrow(/not a regular file/);
  });

  describe('hostile inputs', () => {
    const good = (): Buffer =>
      buildElf({
        entry: 0x200000,
        segments: [
          { paddr: 0x200000, data: pattern(0x1000, 1) },
          { paddr: 0x300000, data: pattern(0x100, 2), memSize: 0x1000 },
        ],
        notes: [pvhNote(0x200010)],
      });
    const parse = (b: Buffer, ram = 64 * MiB) => parseElfKernel(bufferSource('evil', b), ram);

    it('accepts the unmodified file', () => {
      expect(parse(good()).segments).toHaveLength(2);
    });

    it('rejects every truncation without reading past the end', () => {
      const full = good();
      for (const len of [0, 1, 4, 16, 63, 64, 100, 64 + 56, 0x1000, 0x1800, full.length - 1]) {
        expect(() => parse(full.subarray(0, len))).toThrow(VrunError);
      }
    });

    it('rejects wrong class, endianness, machine and type', () => {
      const cases: [number, number, RegExp][] = [
        [4, 1, /64-bit/],
        [5, 2, /little-endian/],
        [18, 3, /machine/],
        [16, 3, /ET_EXEC/],
      ];
      for (const [off, v, msg] of cases) {
        const b = good();
        b[off] = v;
        expect(() => parse(b)).toThrow(msg);
      }
    });

    it('rejects segments past RAM, below 1 MiB, with overflowing sizes or offsets', () => {
      const mutate = (field: number, v: bigint, seg = 0): Buffer => {
        const b = good();
        b.writeBigUInt64LE(v, phdrOffset(seg) + field);
        return b;
      };
      expect(() => parse(good(), 0x300800)).toThrow(/does not fit in guest RAM/);
      expect(() => parse(mutate(24, 0x1000n))).toThrow(/below 1 MiB/);
      expect(() => parse(mutate(24, 0xffff_ffff_ffff_f000n))).toThrow(/does not fit in guest RAM/);
      expect(() => parse(mutate(40, 0xffff_ffff_ffff_ffffn))).toThrow(VrunError);
      expect(() => parse(mutate(8, 0xffff_ffff_ffff_ff00n))).toThrow(/past the end of the file/);
      expect(() => parse(mutate(32, 0x10_0000n))).toThrow(/file size .* above its memory size|past the end/);
      expect(() => parse(mutate(24, 0x200800n, 1))).toThrow(/overlap/);
      const phoff = good();
      phoff.writeBigUInt64LE(0xffff_ffff_ffff_fff0n, 32);
      expect(() => parse(phoff)).toThrow(/program headers/);
      const phnum = good();
      phnum.writeUInt16LE(5000, 56);
      expect(() => parse(phnum)).toThrow(/program headers/);
    });

    it('rejects an entry outside the image and malformed PVH notes', () => {
      const entry = good();
      entry.writeBigUInt64LE(0x900000n, 24);
      expect(() => parse(entry)).toThrow(/entry point/);
      const outside = buildElf({ entry: 0x200000, segments: [{ paddr: 0x200000, data: pattern(16, 1) }], notes: [pvhNote(0x7000)] });
      expect(() => parse(outside)).toThrow(/PVH entry point/);
      const wide = buildElf({ entry: 0x200000, segments: [{ paddr: 0x200000, data: pattern(16, 1) }], notes: [{ name: 'Xen', type: 18, desc: pattern(3, 1) }] });
      expect(() => parse(wide)).toThrow(/3-byte/);
      const huge = buildElf({
        entry: 0x200000,
        segments: [{ paddr: 0x200000, data: pattern(16, 1) }],
        notes: [{ name: 'Xen', type: 18, desc: Buffer.from([0, 0, 0, 0, 1, 0, 0, 0]) }],
      });
      expect(() => parse(huge)).toThrow(/not a 32-bit address/);
      // a note whose descsz claims more than its segment holds
      const b = good();
      const noteOff = Number(b.readBigUInt64LE(phdrOffset(2) + 8));
      b.writeUInt32LE(0xfffffff0, noteOff + 4);
      expect(() => parse(b)).toThrow(/runs past its end/);
    });

    it('survives random corruption: every outcome is a parse or a VrunError', () => {
      let seed = 12345;
      const rnd = (): number => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed;
      };
      const base = good();
      const ram = new Uint8Array(64 * MiB);
      for (let i = 0; i < 3000; i++) {
        const b = Buffer.from(base);
        const flips = 1 + (rnd() % 8);
        for (let j = 0; j < flips; j++) b[rnd() % 0x200]! ^= 1 << (rnd() % 8);
        try {
          const k = parse(b);
          loadElfKernel(k, bufferSource('evil', b), ram);
          for (const s of k.segments) expect(s.paddr + s.memSize).toBeLessThanOrEqual(64 * MiB);
        } catch (err) {
          expect(err).toBeInstanceOf(VrunError);
        }
      }
    });
  });
});
