/**
 * Builds small ELF64 x86-64 executables for the loader tests: PT_LOAD segments at chosen physical
 * addresses and PT_NOTE segments with chosen notes, laid out the way a linker would.
 */

export interface TestSegment {
  paddr: number;
  data: Uint8Array;
  memSize?: number;
}

export interface TestNote {
  name: string;
  type: number;
  desc: Uint8Array;
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

export function encodeNotes(notes: TestNote[]): Buffer {
  const parts: Buffer[] = [];
  for (const n of notes) {
    const name = Buffer.from(`${n.name}\0`, 'latin1');
    const head = Buffer.alloc(12);
    head.writeUInt32LE(name.length, 0);
    head.writeUInt32LE(n.desc.length, 4);
    head.writeUInt32LE(n.type, 8);
    const nameP = Buffer.alloc(align(name.length, 4));
    name.copy(nameP);
    const descP = Buffer.alloc(align(n.desc.length, 4));
    Buffer.from(n.desc).copy(descP);
    parts.push(head, nameP, descP);
  }
  return Buffer.concat(parts);
}

export function pvhNote(entry: number, width: 4 | 8 = 8): TestNote {
  const desc = Buffer.alloc(width);
  if (width === 8) desc.writeBigUInt64LE(BigInt(entry));
  else desc.writeUInt32LE(entry);
  return { name: 'Xen', type: 18, desc };
}

export function buildElf(opts: { entry: number; segments: TestSegment[]; notes?: TestNote[]; machine?: number; type?: number }): Buffer {
  const noteBytes = opts.notes && opts.notes.length > 0 ? encodeNotes(opts.notes) : undefined;
  const phnum = opts.segments.length + (noteBytes ? 1 : 0);
  const header = Buffer.alloc(64);
  header.writeUInt32BE(0x7f454c46, 0);
  header[4] = 2;
  header[5] = 1;
  header[6] = 1;
  header.writeUInt16LE(opts.type ?? 2, 16);
  header.writeUInt16LE(opts.machine ?? 62, 18);
  header.writeUInt32LE(1, 20);
  header.writeBigUInt64LE(BigInt(opts.entry), 24);
  header.writeBigUInt64LE(64n, 32);
  header.writeUInt16LE(64, 52);
  header.writeUInt16LE(56, 54);
  header.writeUInt16LE(phnum, 56);
  const phdrs = Buffer.alloc(56 * phnum);
  const chunks: { offset: number; data: Uint8Array }[] = [];
  let offset = align(64 + phdrs.length, 0x1000);
  opts.segments.forEach((s, i) => {
    const o = i * 56;
    phdrs.writeUInt32LE(1, o);
    phdrs.writeUInt32LE(7, o + 4);
    phdrs.writeBigUInt64LE(BigInt(offset), o + 8);
    phdrs.writeBigUInt64LE(BigInt(0xffffffff80000000n + BigInt(s.paddr)), o + 16);
    phdrs.writeBigUInt64LE(BigInt(s.paddr), o + 24);
    phdrs.writeBigUInt64LE(BigInt(s.data.length), o + 32);
    phdrs.writeBigUInt64LE(BigInt(s.memSize ?? s.data.length), o + 40);
    phdrs.writeBigUInt64LE(0x1000n, o + 48);
    chunks.push({ offset, data: s.data });
    offset = align(offset + s.data.length, 0x1000);
  });
  if (noteBytes) {
    const o = opts.segments.length * 56;
    phdrs.writeUInt32LE(4, o);
    phdrs.writeBigUInt64LE(BigInt(offset), o + 8);
    phdrs.writeBigUInt64LE(BigInt(noteBytes.length), o + 32);
    phdrs.writeBigUInt64LE(BigInt(noteBytes.length), o + 40);
    phdrs.writeBigUInt64LE(4n, o + 48);
    chunks.push({ offset, data: noteBytes });
    offset += noteBytes.length;
  }
  const file = Buffer.alloc(offset);
  header.copy(file, 0);
  phdrs.copy(file, 64);
  for (const c of chunks) file.set(c.data, c.offset);
  return file;
}

/** Offset of program header `i` in a file built by buildElf, for tests that corrupt one field. */
export function phdrOffset(i: number): number {
  return 64 + i * 56;
}
