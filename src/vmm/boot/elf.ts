import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { VrunError, errorMessage } from '../../common/errors.js';
import { HIMEM_START, hex } from '../layout.js';

/**
 * Reads the guest kernel as an ELF64 `vmlinux`: where each PT_LOAD segment goes in guest-physical
 * memory, the 64-bit entry, and the PVH 32-bit entry from the Xen PHYS32_ENTRY note. The file is
 * data we did not produce, so every offset and size is checked in BigInt before it becomes a
 * number, and loading copies straight from the file into guest RAM without a second buffer.
 */

const PT_LOAD = 1;
const PT_NOTE = 4;
const EM_X86_64 = 62;
const ET_EXEC = 2;
const ELF_HEADER_SIZE = 64;
const PHDR_SIZE = 56;
const MAX_PHDRS = 64;
const MAX_NOTE_BYTES = 64 * 1024;
/** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit physical entry point for a PVH boot. */
const XEN_ELFNOTE_PHYS32_ENTRY = 18;
const U32_LIMIT = 0x1_0000_0000n;

/** Random access to the kernel's bytes, so parsing never needs the whole file in memory. */
export interface ElfSource {
  readonly name: string;
  readonly size: number;
  /** Fills `target[targetOffset, targetOffset+length)` from file position `position`; returns bytes read. */
  readInto(position: number, target: Uint8Array, targetOffset: number, length: number): number;
}

export interface LoadSegment {
  paddr: number;
  offset: number;
  fileSize: number;
  memSize: number;
}

export interface ElfKernel {
  source: string;
  /** e_entry: for Linux `vmlinux` this is the physical address of startup_64. */
  entry64: number;
  /** Where a PVH boot starts in 32-bit protected mode, when the kernel carries the note. */
  pvhEntry: number | undefined;
  segments: LoadSegment[];
  /** Lowest and one-past-highest guest-physical byte any segment occupies. */
  start: number;
  end: number;
}

function bad(source: string, what: string): VrunError {
  return new VrunError(`guest kernel ${source} is not a usable x86-64 ELF kernel: ${what}`);
}

function readExact(src: ElfSource, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const got = src.readInto(position, buf, 0, length);
  if (got !== length) throw bad(src.name, `file ends at ${src.size} bytes, needed ${length} bytes at offset ${position}`);
  return buf;
}

function safe(src: ElfSource, v: bigint, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(src.name, `${what} ${hex0(v)} is out of range`);
  return Number(v);
}

function hex0(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/**
 * Validates the ELF and returns what loading needs. `ramLimit` is the end of the RAM the segments
 * must fit below (the low RAM end of the guest); segments must also start at or above 1 MiB so
 * they cannot overwrite the boot structures.
 */
export function parseElfKernel(src: ElfSource, ramLimit: number): ElfKernel {
  if (src.size < ELF_HEADER_SIZE) throw bad(src.name, `only ${src.size} bytes, too short for an ELF header`);
  const eh = readExact(src, 0, ELF_HEADER_SIZE);
  if (eh.readUInt32BE(0) !== 0x7f454c46) throw bad(src.name, 'no ELF magic (is it a bzImage or something else?)');
  if (eh[4] !== 2) throw bad(src.name, 'not a 64-bit ELF (EI_CLASS != ELFCLASS64)');
  if (eh[5] !== 1) throw bad(src.name, 'not little-endian');
  if (eh[6] !== 1) throw bad(src.name, `unknown ELF version ${eh[6]}`);
  const type = eh.readUInt16LE(16);
  if (type !== ET_EXEC) throw bad(src.name, `ELF type ${type} is not ET_EXEC`);
  const machine = eh.readUInt16LE(18);
  if (machine !== EM_X86_64) throw bad(src.name, `machine ${machine} is not x86-64 (62)`);
  const entry = eh.readBigUInt64LE(24);
  const phoff = eh.readBigUInt64LE(32);
  const phentsize = eh.readUInt16LE(54);
  const phnum = eh.readUInt16LE(56);
  if (phentsize !== PHDR_SIZE) throw bad(src.name, `program header size ${phentsize} is not ${PHDR_SIZE}`);
  if (phnum === 0 || phnum > MAX_PHDRS) throw bad(src.name, `${phnum} program headers (expected 1..${MAX_PHDRS})`);
  const phEnd = phoff + BigInt(phnum * PHDR_SIZE);
  if (phEnd > BigInt(src.size)) throw bad(src.name, `program headers at ${hex0(phoff)} run past the end of the file`);
  const ph = readExact(src, Number(phoff), phnum * PHDR_SIZE);

  const segments: LoadSegment[] = [];
  const notes: { offset: number; size: number }[] = [];
  const fileSize = BigInt(src.size);
  const limit = BigInt(ramLimit);
  for (let i = 0; i < phnum; i++) {
    const o = i * PHDR_SIZE;
    const pType = ph.readUInt32LE(o);
    const offset = ph.readBigUInt64LE(o + 8);
    const paddr = ph.readBigUInt64LE(o + 24);
    const filesz = ph.readBigUInt64LE(o + 32);
    const memsz = ph.readBigUInt64LE(o + 40);
    if (pType === PT_LOAD) {
      if (filesz > memsz) throw bad(src.name, `segment ${i} has file size ${hex0(filesz)} above its memory size ${hex0(memsz)}`);
      if (offset + filesz > fileSize) throw bad(src.name, `segment ${i} (offset ${hex0(offset)}, ${hex0(filesz)} bytes) runs past the end of the file`);
      if (paddr < BigInt(HIMEM_START)) throw bad(src.name, `segment ${i} loads at ${hex0(paddr)}, below 1 MiB where the boot structures live`);
      if (paddr + memsz > limit) {
        throw new VrunError(
          `guest kernel ${src.name}: segment ${i} (${hex0(paddr)}+${hex0(memsz)}) does not fit in guest RAM below ${hex(ramLimit)}; give the guest more memory`,
        );
      }
      if (memsz === 0n) continue;
      segments.push({ paddr: safe(src, paddr, 'paddr'), offset: safe(src, offset, 'offset'), fileSize: safe(src, filesz, 'filesz'), memSize: safe(src, memsz, 'memsz') });
    } else if (pType === PT_NOTE) {
      if (offset + filesz > fileSize) throw bad(src.name, `note segment ${i} runs past the end of the file`);
      if (filesz > BigInt(MAX_NOTE_BYTES)) throw bad(src.name, `note segment ${i} is ${hex0(filesz)} bytes, more than ${MAX_NOTE_BYTES}`);
      notes.push({ offset: Number(offset), size: Number(filesz) });
    }
  }
  if (segments.length === 0) throw bad(src.name, 'no loadable segments');
  const sorted = [...segments].sort((a, b) => a.paddr - b.paddr);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (prev.paddr + prev.memSize > cur.paddr) throw bad(src.name, `loadable segments overlap at ${hex(cur.paddr)}`);
  }
  const start = sorted[0]!.paddr;
  const last = sorted[sorted.length - 1]!;
  const end = last.paddr + last.memSize;
  const entry64 = safe(src, entry, 'entry');
  if (!sorted.some((s) => entry64 >= s.paddr && entry64 < s.paddr + s.memSize)) {
    throw bad(src.name, `entry point ${hex(entry64)} lies outside every loadable segment`);
  }

  let pvhEntry: number | undefined;
  for (const n of notes) {
    const found = findPvhNote(src, readExact(src, n.offset, n.size));
    if (found !== undefined) pvhEntry = found;
  }
  if (pvhEntry !== undefined && !sorted.some((s) => pvhEntry! >= s.paddr && pvhEntry! < s.paddr + s.memSize)) {
    throw bad(src.name, `PVH entry point ${hex(pvhEntry)} lies outside every loadable segment`);
  }
  return { source: src.name, entry64, pvhEntry, segments: sorted, start, end };
}

/** Walks one PT_NOTE segment: each note is namesz, descsz, type, then name and desc padded to 4 bytes. */
function findPvhNote(src: ElfSource, buf: Buffer): number | undefined {
  let off = 0;
  let found: number | undefined;
  while (off + 12 <= buf.length) {
    const namesz = buf.readUInt32LE(off);
    const descsz = buf.readUInt32LE(off + 4);
    const type = buf.readUInt32LE(off + 8);
    const nameOff = off + 12;
    const descOff = nameOff + align4(namesz);
    const next = descOff + align4(descsz);
    if (next > buf.length) throw bad(src.name, `note at offset ${off} of a note segment runs past its end`);
    const name = buf.subarray(nameOff, nameOff + namesz).toString('latin1').replace(/\0+$/, '');
    if (name === 'Xen' && type === XEN_ELFNOTE_PHYS32_ENTRY) {
      let value: bigint;
      if (descsz === 4) value = BigInt(buf.readUInt32LE(descOff));
      else if (descsz === 8) value = buf.readBigUInt64LE(descOff);
      else throw bad(src.name, `PVH entry note has a ${descsz}-byte value`);
      if (value >= U32_LIMIT) throw bad(src.name, `PVH entry ${hex0(value)} is not a 32-bit address`);
      found = Number(value);
    }
    off = next;
  }
  return found;
}

function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}

/**
 * Copies every segment into `ram` (guest-physical address 0 at index 0) and zeroes the rest of each
 * segment's memory size (its .bss). The bounds were checked by parseElfKernel against the RAM limit;
 * they are checked again here against this buffer.
 */
export function loadElfKernel(kernel: ElfKernel, src: ElfSource, ram: Uint8Array): void {
  for (const s of kernel.segments) {
    if (s.paddr + s.memSize > ram.length) {
      throw new VrunError(`guest kernel ${src.name}: segment at ${hex(s.paddr)} does not fit in ${ram.length} bytes of guest RAM`);
    }
    let done = 0;
    while (done < s.fileSize) {
      const n = src.readInto(s.offset + done, ram, s.paddr + done, Math.min(s.fileSize - done, 1 << 30));
      if (n <= 0) throw bad(src.name, `file ended while loading the segment at ${hex(s.paddr)}`);
      done += n;
    }
    ram.fill(0, s.paddr + s.fileSize, s.paddr + s.memSize);
  }
}

export function bufferSource(name: string, data: Uint8Array): ElfSource {
  return {
    name,
    size: data.length,
    readInto(position, target, targetOffset, length) {
      if (position >= data.length) return 0;
      const n = Math.min(length, data.length - position);
      target.set(data.subarray(position, position + n), targetOffset);
      return n;
    },
  };
}

/** Opens the kernel file; the caller closes it when loading is done. */
export function openFileSource(file: string): ElfSource & { close(): void } {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw new VrunError(`guest kernel ${file} cannot be opened: ${errorMessage(err)}`, { cause: err });
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw new VrunError(`guest kernel ${file} is not a regular file`);
  }
  return {
    name: file,
    size: st.size,
    readInto(position, target, targetOffset, length) {
      return readSync(fd, target, targetOffset, length, position);
    },
    close() {
      closeSync(fd);
    },
  };
}
