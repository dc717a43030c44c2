import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_LONG_NAME_BYTES, MAX_PAX_BYTES, TarReader, paxText, type PaxRecords, type TarEntry } from '../../src/image/tar-reader.js';
import { VrunError } from '../../src/common/errors.js';
import { cleanup, tempDir } from './helpers.js';
import { prng } from '../prng.js';

const WHAT = 'layer sha256:0123abcd';
const BLOCK = 512;
/** The end-of-archive marker: two zero blocks. */
const END = Buffer.alloc(2 * BLOCK);

// ---------------------------------------------------------------------------------------------------------------
// Feeding the reader

interface Parsed {
  entry: TarEntry;
  /** The entry's data, reassembled from copies of its data events. */
  data: Buffer;
}

interface Result {
  entries: Parsed[];
  done: boolean;
}

/** How the archive is fed: the archive buffer itself in one feed, chunks of one size, or chunks of varying sizes. */
type Plan = 'whole' | number | (() => number);

const SCRATCH_BYTES = 128 << 10;

/**
 * Feeds `archive` to a fresh reader as `plan` says and collects its entries, checking the event protocol as it
 * goes: entry, data*, entry-end; data events non-empty views into the chunk just fed and adding up to the entry's
 * size. Chunks are copied into one reused buffer that is overwritten after every feed (as the unpacker reuses its
 * read buffer), so anything the reader kept of an earlier chunk instead of copying it would come back as garbage.
 */
function parse(archive: Buffer, plan: Plan = 'whole', opts: { end?: boolean } = {}): Result {
  const reader = new TarReader(WHAT);
  const entries: Parsed[] = [];
  let cur: { entry: TarEntry; parts: Buffer[]; got: number } | null = null;
  const feed = (chunk: Buffer): void => {
    for (const ev of reader.feed(chunk)) {
      if (ev.kind === 'entry') {
        if (cur) throw new Error(`entry "${ev.entry.name}" began before entry "${cur.entry.name}" ended`);
        cur = { entry: ev.entry, parts: [], got: 0 };
      } else if (ev.kind === 'data') {
        if (!cur) throw new Error('a data event outside an entry');
        const d = ev.data;
        if (d.length === 0) throw new Error(`an empty data event in "${cur.entry.name}"`);
        if (d.buffer !== chunk.buffer || d.byteOffset < chunk.byteOffset || d.byteOffset + d.length > chunk.byteOffset + chunk.length) {
          throw new Error(`a data event of "${cur.entry.name}" that is not a view into the chunk fed`);
        }
        cur.parts.push(Buffer.from(d)); // a copy: the view is only valid until the next feed
        cur.got += d.length;
        if (cur.got > cur.entry.size) throw new Error(`"${cur.entry.name}": ${cur.got} bytes of data for a size of ${cur.entry.size}`);
      } else {
        if (!cur) throw new Error('an entry-end event outside an entry');
        const data = Buffer.concat(cur.parts);
        if (data.length !== cur.entry.size) throw new Error(`"${cur.entry.name}" ended after ${data.length} of ${cur.entry.size} bytes`);
        entries.push({ entry: cur.entry, data });
        cur = null;
      }
    }
  };
  if (plan === 'whole') {
    feed(archive);
  } else {
    const next = typeof plan === 'number' ? () => plan : plan;
    const scratch = Buffer.alloc(SCRATCH_BYTES);
    for (let off = 0; off < archive.length; ) {
      const len = Math.min(Math.max(1, next()), archive.length - off, scratch.length);
      archive.copy(scratch, 0, off, off + len);
      feed(scratch.subarray(0, len));
      scratch.fill(0xa5, 0, len);
      off += len;
    }
  }
  if (opts.end !== false) reader.end();
  return { entries, done: reader.done };
}

/** The VrunError that parsing `archive` (fed whole, and fed in the other plans) ends with: the same for every plan. */
function parseError(archive: Buffer, plans: Plan[] = ['whole', 1, 511]): string {
  const messages = plans.map((plan) => {
    try {
      parse(archive, plan);
    } catch (err) {
      if (err instanceof VrunError) return err.message;
      throw err;
    }
    return '(no error)';
  });
  for (const m of messages) expect(m).toBe(messages[0]);
  const msg = messages[0] as string;
  expect(msg.startsWith(`${WHAT}: `), msg).toBe(true);
  return msg;
}


/** Chunk sizes that mostly straddle block boundaries (1, 511, 513...) with now and then a large one. */
function randomPlan(seed: number): () => number {
  const rnd = prng(seed);
  const small = [1, 1, 2, 3, 100, 511, 512, 513, 1023, 1024, 1025];
  return () => (rnd() < 0.7 ? (small[Math.floor(rnd() * small.length)] as number) : 1 + Math.floor(rnd() * 100_000));
}

// ---------------------------------------------------------------------------------------------------------------
// Hand-made headers

interface Hdr {
  name?: string;
  type?: string;
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string;
  prefix?: string;
  magic?: 'ustar' | 'gnu' | 'none';
  /** Changes fields before the checksum is computed. */
  patch?: (b: Buffer) => void;
  /** Computes the checksum over signed bytes, as some old tars did. */
  signedChecksum?: boolean;
}

function octal(b: Buffer, off: number, len: number, v: number): void {
  b.write(`${v.toString(8).padStart(len - 1, '0')}\0`, off, len, 'latin1');
}

/** A base-256 numeric field: 0x80 in the first byte, the value big-endian in the rest. */
function base256(b: Buffer, off: number, len: number, v: bigint): void {
  b.fill(0, off, off + len);
  for (let i = off + len - 1; i > off; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  b[off] = 0x80 | Number(v & 0x3fn);
}

/** A 512-byte ustar header (name 0..100, mode 100, uid 108, gid 116, size 124, mtime 136, chksum 148, flag 156...). */
function header(h: Hdr): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(h.name ?? 'file', 0, 100, 'utf8');
  octal(b, 100, 8, h.mode ?? 0o644);
  octal(b, 108, 8, h.uid ?? 0);
  octal(b, 116, 8, h.gid ?? 0);
  octal(b, 124, 12, h.size ?? 0);
  octal(b, 136, 12, h.mtime ?? 1_700_000_000);
  b.write(h.type ?? '0', 156, 1, 'latin1');
  b.write(h.linkname ?? '', 157, 100, 'utf8');
  const magic = h.magic ?? 'ustar';
  if (magic === 'ustar') b.write('ustar\0' + '00', 257, 8, 'latin1');
  if (magic === 'gnu') b.write('ustar  \0', 257, 8, 'latin1');
  b.write(h.prefix ?? '', 345, 155, 'utf8');
  h.patch?.(b);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += h.signedChecksum && x > 127 ? x - 256 : x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return b;
}

/** Data padded to whole blocks. */
function padded(data: Buffer | string): Buffer {
  const b = Buffer.from(data);
  return Buffer.concat([b, Buffer.alloc((BLOCK - (b.length % BLOCK)) % BLOCK)]);
}

/** A header and its padded data; the size field is the data's length unless `h.size` says otherwise. */
function member(h: Hdr, data: Buffer | string = ''): Buffer {
  return Buffer.concat([header({ size: Buffer.byteLength(data), ...h }), padded(data)]);
}

/** One pax record, `<length> <key>=<value>\n`, its length counting its own digits. */
function paxRecord(key: string, value: string): string {
  const rest = ` ${key}=${value}\n`;
  const restLen = Buffer.byteLength(rest);
  let len = restLen + 1;
  while (String(len).length + restLen !== len) len = String(len).length + restLen;
  return `${len}${rest}`;
}

/** One pax record with a binary value: the length counts bytes, as a reader must. */
function paxRecordBytes(key: string, value: Buffer): Buffer {
  const restLen = Buffer.byteLength(` ${key}=`) + value.length + 1;
  let len = restLen + 1;
  while (String(len).length + restLen !== len) len = String(len).length + restLen;
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')]);
}

/** A pax extended header ('x') or global header ('g') member holding `records` (or a raw body). */
function paxMember(type: 'x' | 'g', records: Record<string, string> | string): Buffer {
  const body =
    typeof records === 'string'
      ? records
      : Object.entries(records)
          .map(([k, v]) => paxRecord(k, v))
          .join('');
  return member({ name: 'PaxHeaders.0/entry', type }, body);
}

/** pax records with their values decoded as UTF-8, for comparing records that are all text. */
function paxStrings(pax: PaxRecords | null | undefined): Record<string, string> | null {
  return pax ? Object.fromEntries(Object.entries(pax).map(([k, v]) => [k, v.toString('utf8')])) : null;
}

function tarOf(...parts: Buffer[]): Buffer {
  return Buffer.concat([...parts, END]);
}

function names(r: Result): string[] {
  return r.entries.map((p) => p.entry.name);
}

/** What GNU tar lists for an archive given on stdin: [mode string, owner, size, name] per line. */
function gnuList(archive: Buffer): string[][] {
  const out = execFileSync('tar', ['-tv', '--numeric-owner', '-f', '-'], { input: archive, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
  return out
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const f = l.split(/\s+/);
      return [f[0] ?? '', f[1] ?? '', f[2] ?? '', f.slice(5).join(' ')];
    });
}

function sha(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

function tar(args: string[], cwd?: string): string {
  return execFileSync('tar', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], cwd, maxBuffer: 64 << 20 });
}

// ---------------------------------------------------------------------------------------------------------------

describe('the hand-made headers of these tests', () => {
  it('are read by GNU tar as meant (so the errors below come from the fault put in, not from the helper)', () => {
    const archive = tarOf(
      member({ name: 'dir/', type: '5', mode: 0o1777, uid: 7, gid: 8 }),
      member({ name: 'dir/file', mode: 0o640, uid: 1000, gid: 1001 }, 'hello world'),
      member({ name: 'dir/link', type: '2', linkname: 'file', mode: 0o777 }),
      member({ name: 'name', prefix: 'a/prefix', mode: 0o600 }, 'x'.repeat(700)),
      member({ name: 'signed', signedChecksum: true, patch: (b) => b.write('usér-ü', 265, 32, 'utf8') }, 'abc'), // bytes > 127: signed sum != unsigned
      paxMember('x', { path: 'pax/path/name', size: '12', uid: '3000000' }),
      member({ name: 'short', size: 3 }, 'twelve bytes'),
      member({ name: 'b256', patch: (b) => base256(b, 124, 12, 1000n) }, 'y'.repeat(1000)),
    );
    expect(gnuList(archive)).toEqual([
      ['drwxrwxrwt', '7/8', '0', 'dir/'],
      ['-rw-r-----', '1000/1001', '11', 'dir/file'],
      ['lrwxrwxrwx', '0/0', '0', 'dir/link -> file'],
      ['-rw-------', '0/0', '700', 'a/prefix/name'],
      ['-rw-r--r--', '0/0', '3', 'signed'],
      ['-rw-r--r--', '3000000/0', '12', 'pax/path/name'],
      ['-rw-r--r--', '0/0', '1000', 'b256'],
    ]);
    const r = parse(archive);
    expect(r.entries.map((p) => [p.entry.type, p.entry.mode, `${p.entry.uid}/${p.entry.gid}`, p.entry.size, p.entry.name, p.entry.linkname])).toEqual([
      ['directory', 0o1777, '7/8', 0, 'dir/', ''],
      ['file', 0o640, '1000/1001', 11, 'dir/file', ''],
      ['symlink', 0o777, '0/0', 0, 'dir/link', 'file'],
      ['file', 0o600, '0/0', 700, 'a/prefix/name', ''],
      ['file', 0o644, '0/0', 3, 'signed', ''],
      ['file', 0o644, '0/0', 12, 'pax/path/name', ''],
      ['file', 0o644, '0/0', 1000, 'b256', ''],
    ]);
    expect(r.entries.map((p) => p.data.toString())).toEqual(['', 'hello world', '', 'x'.repeat(700), 'abc', 'twelve bytes', 'y'.repeat(1000)]);
    expect(r.entries.map((p) => p.entry.mtime)).toEqual(Array(7).fill(1_700_000_000));
    expect(r.done).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------------

interface Want {
  type: 'file' | 'directory' | 'symlink' | 'fifo';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  linkname: string;
  ino: string;
  content: Buffer | null;
}

/** The tree under root/top as the kernel shows it, keyed by the path relative to root. */
function describeSource(root: string, top: string): Map<string, Want> {
  const out = new Map<string, Want>();
  const walk = (rel: string): void => {
    const p = path.join(root, rel);
    const st = fs.lstatSync(p);
    const type = st.isDirectory() ? 'directory' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : null;
    if (!type) throw new Error(`unexpected file type at ${p}`);
    out.set(rel, {
      type,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      size: type === 'file' ? st.size : 0,
      mtime: Math.floor(st.mtimeMs / 1000),
      linkname: type === 'symlink' ? fs.readlinkSync(p) : '',
      ino: `${st.dev}:${st.ino}`,
      content: type === 'file' ? fs.readFileSync(p) : null,
    });
    if (type === 'directory') for (const name of fs.readdirSync(p).sort()) walk(`${rel}/${name}`);
  };
  walk(top);
  return out;
}

/** The owner a consumer applies: a pax uid/gid record when there is one, else the header's. */
function owner(e: TarEntry): [number, number] {
  const uid = paxText(e.pax, 'uid');
  const gid = paxText(e.pax, 'gid');
  return [uid !== undefined ? Number(uid) : e.uid, gid !== undefined ? Number(gid) : e.gid];
}

/** Every source file, directory, symlink, fifo and hardlink is in the archive exactly once, as it is on disk. */
function expectSameAsSource(entries: Parsed[], want: Map<string, Want>): void {
  const seen = new Map<string, Parsed>();
  for (const p of entries) {
    const { entry, data } = p;
    const name = entry.name.replace(/\/$/, '');
    const w = want.get(name);
    expect(w, `"${name}" is not in the source tree`).toBeDefined();
    if (!w) continue;
    expect(seen.has(name), `"${name}" twice`).toBe(false);
    seen.set(name, p);
    expect(entry.mode & 0o7777, name).toBe(w.mode);
    expect(owner(entry), name).toEqual([w.uid, w.gid]);
    expect(entry.mtime, name).toBe(w.mtime);
    if (entry.type === 'link') {
      // A second name of a file: its target is an earlier entry with the data, and the same inode on disk.
      expect(w.type, name).toBe('file');
      expect(want.get(entry.linkname)?.ino, `${name} -> ${entry.linkname}`).toBe(w.ino);
      expect(seen.get(entry.linkname)?.entry.type, `${name} -> ${entry.linkname}`).toBe('file');
      expect(entry.size, name).toBe(0);
      continue;
    }
    expect(entry.type, name).toBe(w.type);
    expect(entry.size, name).toBe(w.size);
    expect(entry.linkname, name).toBe(w.linkname);
    if (w.content) expect(sha(data), name).toBe(sha(w.content));
    else expect(data.length, name).toBe(0);
  }
  expect([...seen.keys()].sort()).toEqual([...want.keys()].sort());
}

describe('round trip against GNU tar', () => {
  let dir: string;
  const archives = new Map<string, { file: string; bytes: Buffer; want: Map<string, Want> }>();

  /** Files that end on and around block boundaries, owners and modes, names around the 100-byte field, a hardlink, a fifo. */
  function commonTree(t: string): void {
    fs.mkdirSync(t, { recursive: true });
    const w = (rel: string, data: Buffer | string, mode = 0o644): void => {
      fs.writeFileSync(path.join(t, rel), data);
      fs.chmodSync(path.join(t, rel), mode);
    };
    w('empty', '');
    w('one', 'x');
    for (const n of [511, 512, 513, 1024, 5000]) w(`bytes-${n}`, crypto.randomBytes(n));
    fs.linkSync(path.join(t, 'bytes-5000'), path.join(t, 'hardlink-to-5000'));
    w('setuid', '#!/bin/sh\n', 0o4755);
    w('setgid', '', 0o2711);
    w('owned', 'mine\n', 0o600);
    fs.chownSync(path.join(t, 'owned'), 1000, 1001);
    fs.mkdirSync(path.join(t, 'sticky'));
    fs.chmodSync(path.join(t, 'sticky'), 0o1777);
    fs.mkdirSync(path.join(t, 'private'));
    fs.chmodSync(path.join(t, 'private'), 0o700);
    execFileSync('mkfifo', ['-m', '0640', path.join(t, 'pipe')]);
    // Whole paths of 99, 100 and 101 bytes: the name field is 100 bytes, with no NUL when full.
    for (const len of [99, 100, 101]) w('n'.repeat(len - 2), `${len}\n`);
    fs.symlinkSync('s'.repeat(100), path.join(t, 'symlink-100')); // fills the linkname field
    fs.symlinkSync('one', path.join(t, 'symlink'));
    // A path of 150 bytes whose last component is short: ustar splits it into prefix and name.
    const split = path.join(t, 'p'.repeat(60), 'q'.repeat(60));
    fs.mkdirSync(split, { recursive: true });
    w(path.join('p'.repeat(60), 'q'.repeat(60), 'f'.repeat(25)), 'split path\n');
  }

  beforeAll(() => {
    dir = tempDir('tar-reader');
    // The full tree: what only GNU and pax can carry.
    const full = path.join(dir, 'full');
    commonTree(path.join(full, 't'));
    const t = path.join(full, 't');
    fs.writeFileSync(path.join(t, 'big'), crypto.randomBytes(3 << 20));
    fs.chownSync(path.join(t, 'big'), 3_000_000, 4_000_000); // beyond the octal uid field: GNU base-256, pax records
    fs.linkSync(path.join(t, 'big'), path.join(t, 'big-link'));
    const deep = path.join(t, 'a'.repeat(90), 'b'.repeat(90), 'c'.repeat(90));
    fs.mkdirSync(deep, { recursive: true });
    const deepFile = path.join(deep, `${'long-name-'.repeat(12)}.txt`); // > 255 bytes in all: no prefix split
    fs.writeFileSync(deepFile, 'long paths need pax or GNU long names\n');
    fs.linkSync(deepFile, path.join(t, 'hardlink-to-deep')); // a long link name
    fs.symlinkSync(`../${'x'.repeat(150)}/target`, path.join(t, 'long-symlink'));
    for (const format of ['gnu', 'pax', 'posix']) {
      const file = path.join(dir, `full-${format}.tar`);
      tar(['-C', full, `--format=${format}`, '-cf', file, 't']);
      archives.set(`full-${format}`, { file, bytes: fs.readFileSync(file), want: describeSource(full, 't') });
    }
    // The small tree: what ustar can carry too (written in the other formats as well).
    const small = path.join(dir, 'small');
    commonTree(path.join(small, 't'));
    for (const format of ['ustar', 'oldgnu', 'gnu', 'pax']) {
      const file = path.join(dir, `small-${format}.tar`);
      tar(['-C', small, `--format=${format}`, '-cf', file, 't']);
      archives.set(`small-${format}`, { file, bytes: fs.readFileSync(file), want: describeSource(small, 't') });
    }
  });
  afterAll(() => cleanup(dir));

  const check = (key: string, plan: Plan): Result => {
    const a = archives.get(key);
    if (!a) throw new Error(`no archive ${key}`);
    const r = parse(a.bytes, plan);
    expect(r.done).toBe(true);
    // The same names in the same order as GNU tar lists them, and the same files as on disk.
    expect(names(r)).toEqual(tar(['-tf', a.file]).split('\n').filter((l) => l !== ''));
    expectSameAsSource(r.entries, a.want);
    return r;
  };

  const plans: [string, () => Plan][] = [
    ['fed whole', () => 'whole'],
    ['in 511-byte chunks', () => 511],
    ['in 513-byte chunks', () => 513],
    ['in random chunks (seed 1)', () => randomPlan(1)],
    ['in random chunks (seed 2)', () => randomPlan(2)],
  ];

  for (const format of ['gnu', 'pax', 'posix']) {
    for (const [label, plan] of plans) {
      it(`--format=${format} with long paths, a long symlink, a 3 MiB file owned by uid 3000000, ${label}`, () => {
        const r = check(`full-${format}`, plan());
        const find = (suffix: string): TarEntry => {
          const e = r.entries.find((p) => p.entry.name.endsWith(suffix))?.entry;
          if (!e) throw new Error(`no entry ending in ${suffix}`);
          return e;
        };
        // The features under test are really in the archive.
        expect(find('long-name-.txt').name.length).toBeGreaterThan(255);
        expect(find('long-symlink').linkname.length).toBeGreaterThan(100);
        // "big" and "big-link" are one file: whichever tar met first has the data, the other is a hardlink to it.
        const big = r.entries.find((p) => /\/big(-link)?$/.test(p.entry.name) && p.entry.type === 'file')?.entry;
        expect(big?.size).toBe(3 << 20);
        expect(r.entries.find((p) => /\/big(-link)?$/.test(p.entry.name) && p.entry.type === 'link')?.entry.linkname).toBe(big?.name);
        if (format === 'gnu') {
          expect(r.entries.every((p) => p.entry.pax === null)).toBe(true);
          expect(archives.get('full-gnu')?.bytes.includes('././@LongLink')).toBe(true);
          // No pax: the uid and gid came from base-256 header fields.
          expect([big?.uid, big?.gid]).toEqual([3_000_000, 4_000_000]);
        } else {
          expect(paxText(find('long-name-.txt').pax, 'path')).toBe(find('long-name-.txt').name);
          expect(paxText(find('long-symlink').pax, 'linkpath')).toBe(find('long-symlink').linkname);
          expect([paxText(big?.pax, 'uid'), paxText(big?.pax, 'gid')]).toEqual(['3000000', '4000000']);
        }
      });
    }
  }

  for (const format of ['ustar', 'oldgnu', 'gnu', 'pax']) {
    for (const [label, plan] of [['in 1-byte chunks', () => 1] as [string, () => Plan], ...plans]) {
      it(`--format=${format}, small tree, ${label}`, () => {
        const r = check(`small-${format}`, plan());
        const split = r.entries.find((p) => p.entry.name.endsWith('f'.repeat(25)))?.entry;
        expect(split?.name.length).toBe(2 + 61 + 61 + 25);
        if (format === 'ustar') {
          expect(r.entries.every((p) => p.entry.pax === null)).toBe(true);
          expect(archives.get('small-ustar')?.bytes.includes('././@LongLink')).toBe(false); // so the 150-byte path came from prefix + name
        }
      });
    }
  }

  it('data events are views into the buffer fed, not copies', () => {
    const bytes = archives.get('full-gnu')?.bytes as Buffer;
    let views = 0;
    const reader = new TarReader(WHAT);
    for (const ev of reader.feed(bytes)) {
      if (ev.kind !== 'data') continue;
      expect(ev.data.buffer).toBe(bytes.buffer);
      // The bytes of the event are those of the archive at the same place.
      const at = ev.data.byteOffset - bytes.byteOffset;
      expect(ev.data.equals(bytes.subarray(at, at + ev.data.length))).toBe(true);
      views++;
    }
    expect(views).toBeGreaterThan(5);
    expect(reader.done).toBe(true);
  });

  /** A file dated 1960, archived in `format`: its mtime as the kernel has it, and the archive's bytes. */
  const oldFile = (format: 'pax' | 'gnu'): { want: number; file: string } => {
    const src = path.join(dir, `old-${format}`);
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'old'), 'old\n');
    execFileSync('touch', ['-d', '1960-01-01T00:00:00Z', path.join(src, 'old')]);
    const want = Math.floor(fs.statSync(path.join(src, 'old')).mtimeMs / 1000);
    expect(want).toBeLessThan(0);
    const file = path.join(dir, `old-${format}.tar`);
    tar(['-C', src, `--format=${format}`, '-cf', file, 'old']);
    return { want, file };
  };

  it('a file dated before 1970 in a pax archive: the header says 0, the pax mtime record says when', () => {
    const { want, file } = oldFile('pax');
    const [e] = parse(fs.readFileSync(file)).entries;
    expect(Number(paxText(e?.entry.pax, 'mtime'))).toBe(want);
  });

  it('a file dated before 1970 in a GNU archive (negative base-256 mtime, which Go archive/tar reads)', () => {
    const { want, file } = oldFile('gnu');
    expect(execFileSync('tar', ['-tv', '--full-time', '-f', file], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } })).toContain('1960-01-01 00:00:00');
    const r = parse(fs.readFileSync(file));
    expect(r.entries.map((p) => [p.entry.name, p.entry.mtime, p.data.toString()])).toEqual([['old', want, 'old\n']]);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('pax records', () => {
  it('override the header: path, linkpath and size; uid and gid are handed over in entry.pax; they last one entry', () => {
    const archive = tarOf(
      paxMember('x', { path: 'over/ridden/path', linkpath: 'pax-target', size: '10', uid: '3000000', gid: '4000000' }),
      member({ name: 'header-name', type: '0', size: 3, uid: 5, gid: 6 }, '0123456789'),
      paxMember('x', { linkpath: 'l'.repeat(300) }),
      member({ name: 'sym', type: '2', linkname: 'header-target' }),
      member({ name: 'plain', uid: 5, gid: 6 }, 'abc'),
    );
    const r = parse(archive);
    const [a, b, c] = r.entries;
    expect([a?.entry.name, a?.entry.linkname, a?.entry.size, a?.data.toString()]).toEqual(['over/ridden/path', 'pax-target', 10, '0123456789']);
    expect([paxText(a?.entry.pax, 'uid'), paxText(a?.entry.pax, 'gid')]).toEqual(['3000000', '4000000']);
    expect([b?.entry.name, b?.entry.type, b?.entry.linkname]).toEqual(['sym', 'symlink', 'l'.repeat(300)]);
    expect([c?.entry.name, c?.entry.size, c?.entry.uid, c?.entry.gid, c?.entry.pax, c?.data.toString()]).toEqual(['plain', 3, 5, 6, null, 'abc']);
    // GNU tar reads the same archive the same way.
    expect(gnuList(archive).map((l) => [l[1], l[2], l[3]])).toEqual([
      ['3000000/4000000', '10', 'over/ridden/path'],
      ['0/0', '0', `sym -> ${'l'.repeat(300)}`],
      ['5/6', '3', 'plain'],
    ]);
  });

  it('a GNU long name or long link wins over a pax path or linkpath for the same entry, as in Go archive/tar', () => {
    const archive = tarOf(
      paxMember('x', { path: 'from-pax', linkpath: 'pax-target' }),
      member({ name: '././@LongLink', type: 'L', magic: 'gnu' }, 'from-long-name\0'),
      member({ name: '././@LongLink', type: 'K', magic: 'gnu' }, 'long-target\0'),
      header({ name: 'short', type: '2', linkname: 'short-target', magic: 'gnu' }),
      END,
    );
    expect(parse(archive).entries.map((p) => [p.entry.name, p.entry.linkname])).toEqual([['from-long-name', 'long-target']]);
  });

  it('global records apply to every later entry, per-entry records override them for one entry, later globals merge in', () => {
    const r = parse(
      tarOf(
        member({ name: 'before' }),
        paxMember('g', { comment: 'global', uid: '100', 'SCHILY.xattr.user.a': 'g' }),
        member({ name: 'one' }),
        paxMember('x', { uid: '200', 'SCHILY.xattr.user.a': 'x' }),
        member({ name: 'two' }),
        member({ name: 'three' }),
        paxMember('g', { comment: 'second' }),
        paxMember('x', { gid: '7' }),
        member({ name: 'four' }),
      ),
    );
    expect(r.entries.map((p) => [p.entry.name, paxStrings(p.entry.pax)])).toEqual([
      ['before', null],
      ['one', { comment: 'global', uid: '100', 'SCHILY.xattr.user.a': 'g' }],
      ['two', { comment: 'global', uid: '200', 'SCHILY.xattr.user.a': 'x' }],
      ['three', { comment: 'global', uid: '100', 'SCHILY.xattr.user.a': 'g' }],
      ['four', { comment: 'second', uid: '100', 'SCHILY.xattr.user.a': 'g', gid: '7' }],
    ]);
  });

  it('records are length-delimited: values may hold "=" and newlines; NUL padding after the last record is ignored', () => {
    const body = paxRecord('comment', 'a=b\nc=d') + paxRecord('SCHILY.xattr.user.k', 'v') + '\0'.repeat(20);
    const [e] = parse(tarOf(paxMember('x', body), member({ name: 'f' }))).entries;
    expect(Object.entries(paxStrings(e?.entry.pax) ?? {})).toEqual([
      ['comment', 'a=b\nc=d'],
      ['SCHILY.xattr.user.k', 'v'],
    ]);
  });

  it('__proto__ and constructor are stored as plain keys and change nothing else', () => {
    const r = parse(
      tarOf(
        paxMember('g', { ['__proto__']: 'global-proto', toString: 'x' }),
        paxMember('x', { constructor: 'ctor', ['__proto__']: '{"path":"evil"}', hasOwnProperty: 'h' }),
        member({ name: 'plain', size: 2 }, 'ab'),
        member({ name: 'next' }),
      ),
    );
    const [a, b] = r.entries;
    expect([a?.entry.name, a?.entry.size, a?.data.toString(), a?.entry.linkname]).toEqual(['plain', 2, 'ab', '']);
    expect(Object.entries(paxStrings(a?.entry.pax) ?? {}).sort()).toEqual(
      [
        ['__proto__', '{"path":"evil"}'],
        ['constructor', 'ctor'],
        ['hasOwnProperty', 'h'],
        ['toString', 'x'],
      ].sort(),
    );
    expect(Object.entries(paxStrings(b?.entry.pax) ?? {}).sort()).toEqual([
      ['__proto__', 'global-proto'],
      ['toString', 'x'],
    ]);
    expect(b?.entry.pax?.path).toBeUndefined();
    expect(b?.entry.pax?.size).toBeUndefined();
    expect(({} as Record<string, unknown>).path).toBeUndefined();
    expect(typeof Object.prototype.toString).toBe('function');
  });

  it('values are handed over as the bytes in the archive: binary xattr values (bytes >= 0x80, invalid UTF-8) intact', () => {
    // A file capability as setcap writes it (cap_setuid=ep: 0x80 in the permitted mask), then bytes that are no
    // UTF-8 at all: a lone continuation byte, 0xff/0xfe, an encoded surrogate, an overlong form, NUL, "=" and "\n".
    const cap = Buffer.from('0100000280000000000000000000000000000000', 'hex');
    const junk = Buffer.from([0x80, 0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0xc0, 0xaf, 0x00, 0x3d, 0x0a, 0xf4, 0x90, 0x80, 0x80, 0xe2, 0x82]);
    const archive = tarOf(
      member({ name: 'PaxHeaders.0/g', type: 'g' }, paxRecordBytes('SCHILY.xattr.user.global', junk.subarray(0, 5))),
      member(
        { name: 'PaxHeaders.0/f', type: 'x' },
        Buffer.concat([paxRecordBytes('SCHILY.xattr.security.capability', cap), paxRecordBytes('SCHILY.xattr.user.junk', junk), Buffer.from(paxRecord('path', 'dïr/fïle'))]),
      ),
      member({ name: 'f' }, 'abc'),
      member({ name: 'next' }, 'de'),
    );
    for (const plan of ['whole', 1, 511, 513, randomPlan(7)] as Plan[]) {
      const [f, next] = parse(archive, plan).entries;
      const hex = (e: Parsed | undefined): [string, string][] => Object.entries(e?.entry.pax ?? {}).map(([k, v]) => [k, v.toString('hex')]);
      expect(hex(f)).toEqual([
        ['SCHILY.xattr.user.global', junk.subarray(0, 5).toString('hex')],
        ['SCHILY.xattr.security.capability', cap.toString('hex')],
        ['SCHILY.xattr.user.junk', junk.toString('hex')],
        ['path', Buffer.from('dïr/fïle').toString('hex')],
      ]);
      // Text records are still text where the reader uses them.
      expect([f?.entry.name, f?.data.toString(), paxText(f?.entry.pax, 'path')]).toEqual(['dïr/fïle', 'abc', 'dïr/fïle']);
      expect(hex(next)).toEqual([['SCHILY.xattr.user.global', junk.subarray(0, 5).toString('hex')]]);
      expect([next?.entry.name, next?.data.toString()]).toEqual(['next', 'de']);
    }
  });

  it('a pax size that is not a whole number is refused', () => {
    const good = tarOf(paxMember('x', { size: '4' }), member({ name: 'f', size: 0 }, 'abcd'));
    expect(parse(good).entries[0]?.data.toString()).toBe('abcd');
    for (const bad of ['-4', '4.0', '0x10', '99999999999999999', '']) {
      expect(parseError(tarOf(paxMember('x', { size: bad }), member({ name: 'f', size: 0 }, 'abcd')))).toContain(`a pax size "${bad}" that is not a whole number at byte 1024`);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('end of archive', () => {
  let dir: string;
  let one: Buffer; // a GNU tar archive (blocking factor 1) of one 700-byte file "f": header, 2 data blocks, end
  let two: Buffer; // ... of files "f" and "g"
  beforeAll(() => {
    dir = tempDir('tar-reader-end');
    fs.writeFileSync(path.join(dir, 'f'), crypto.randomBytes(700));
    fs.writeFileSync(path.join(dir, 'g'), 'gee\n');
    tar(['-C', dir, '--format=gnu', '-b1', '-cf', path.join(dir, 'one.tar'), 'f']);
    tar(['-C', dir, '--format=gnu', '-b1', '-cf', path.join(dir, 'two.tar'), 'f', 'g']);
    one = fs.readFileSync(path.join(dir, 'one.tar'));
    two = fs.readFileSync(path.join(dir, 'two.tar'));
  });
  afterAll(() => cleanup(dir));

  it('is two zero blocks: done is set by the second, and nothing after it is parsed', () => {
    expect(one.length).toBe(3 * BLOCK + END.length);
    const reader = new TarReader(WHAT);
    const kinds = [...reader.feed(one.subarray(0, 4 * BLOCK))].map((e) => e.kind);
    expect(kinds).toEqual(['entry', 'data', 'entry-end']);
    expect(reader.done).toBe(false); // one zero block so far
    expect([...reader.feed(one.subarray(4 * BLOCK))]).toEqual([]);
    expect(reader.done).toBe(true);
    // Another archive, random bytes: not entries, not errors.
    expect([...reader.feed(two)]).toEqual([]);
    expect([...reader.feed(crypto.randomBytes(3000))]).toEqual([]);
    reader.end();
    expect(reader.done).toBe(true);
  });

  it('bytes after the marker in the same chunk are not parsed either', () => {
    const r = parse(Buffer.concat([one, two, crypto.randomBytes(1000)]));
    expect(names(r)).toEqual(['f']);
    expect(r.done).toBe(true);
    expect(sha(r.entries[0]?.data as Buffer)).toBe(sha(fs.readFileSync(path.join(dir, 'f'))));
  });

  it('a single zero block followed by a header is an error', () => {
    const withoutEnd = one.subarray(0, 3 * BLOCK);
    const archive = Buffer.concat([withoutEnd, Buffer.alloc(BLOCK), two]);
    expect(parseError(archive)).toBe(`${WHAT}: the tar stream has a lone zero block before more headers (corrupt archive) at byte ${3 * BLOCK}`);
  });

  it('a stream that stops at a header boundary without the marker is accepted, as is one that stops after one zero block', () => {
    for (const cut of [3 * BLOCK, 4 * BLOCK]) {
      for (const plan of ['whole', 1] as Plan[]) {
        const r = parse(one.subarray(0, cut), plan);
        expect(names(r)).toEqual(['f']);
        expect(r.entries[0]?.data.length).toBe(700);
        expect(r.done).toBe(false);
      }
    }
    expect(parse(Buffer.alloc(0)).entries).toEqual([]);
  });

  it('a stream cut mid-data, mid-padding or mid-header is refused by end()', () => {
    expect(parseError(one.subarray(0, 1000))).toBe(`${WHAT}: the tar stream ends in the middle of entry "f" (truncated archive)`);
    expect(parseError(one.subarray(0, BLOCK + 700 + 1))).toBe(`${WHAT}: the tar stream ends in the middle of a 512-byte block (truncated archive)`);
    expect(parseError(one.subarray(0, 200))).toBe(`${WHAT}: the tar stream ends in the middle of a 512-byte block (truncated archive)`);
    expect(parseError(two.subarray(0, 3 * BLOCK + 300))).toBe(`${WHAT}: the tar stream ends in the middle of a 512-byte block (truncated archive)`);
    expect(parseError(one.subarray(0, 3 * BLOCK + 100))).toBe(`${WHAT}: the tar stream ends in the middle of a 512-byte block (truncated archive)`);
    // A header claiming data that never comes.
    expect(parseError(one.subarray(0, BLOCK))).toBe(`${WHAT}: the tar stream ends in the middle of entry "f" (truncated archive)`);
    // The same cut after the whole entry is fine (control).
    expect(parse(one.subarray(0, 3 * BLOCK)).entries).toHaveLength(1);
  });

  it('a stream cut inside, or right after, a pax or GNU long-name record is refused by end()', () => {
    const long = path.join(dir, `${'long-'.repeat(30)}name`);
    fs.writeFileSync(long, 'x');
    for (const [format, kind] of [
      ['pax', 'pax'],
      ['gnu', 'long-name'],
    ]) {
      const file = path.join(dir, `long-${format}.tar`);
      tar(['-C', dir, `--format=${format}`, '-b1', '-cf', file, path.basename(long)]);
      const bytes = fs.readFileSync(file);
      expect(String.fromCharCode(bytes[156] as number)).toBe(format === 'pax' ? 'x' : 'L');
      const metaSize = parseInt(bytes.toString('latin1', 124, 135), 8);
      const afterMeta = BLOCK + Math.ceil(metaSize / BLOCK) * BLOCK;
      expect(parse(bytes).entries.map((p) => p.entry.name)).toEqual([path.basename(long)]); // control
      expect(parseError(bytes.subarray(0, BLOCK + 10))).toBe(`${WHAT}: the tar stream ends in the middle of a ${kind} record (truncated archive)`);
      expect(parseError(bytes.subarray(0, afterMeta))).toBe(`${WHAT}: the tar stream ends after a pax or GNU long-name record with no entry for it`);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('hostile or broken input', () => {
  let dir: string;
  let two: Buffer;
  beforeAll(() => {
    dir = tempDir('tar-reader-bad');
    fs.writeFileSync(path.join(dir, 'f'), crypto.randomBytes(700));
    fs.writeFileSync(path.join(dir, 'g'), 'gee\n');
    tar(['-C', dir, '--format=gnu', '-b1', '-cf', path.join(dir, 'two.tar'), 'f', 'g']);
    two = fs.readFileSync(path.join(dir, 'two.tar'));
  });
  afterAll(() => cleanup(dir));

  it('a header with a bad checksum', () => {
    expect(names(parse(two))).toEqual(['f', 'g']);
    const bad = Buffer.from(two);
    bad[3 * BLOCK] = 'h'.charCodeAt(0); // "g" renamed "h" without a new checksum
    expect(parseError(bad)).toMatch(new RegExp(`^${WHAT}: the tar stream has a header with a bad checksum \\(stored \\d+, computed \\d+\\): not a tar archive, or corrupt at byte ${3 * BLOCK}$`));
    const junk = crypto.randomBytes(4096);
    expect(parseError(junk)).toMatch(/ checksum/);
  });

  it('a v7 header, with no ustar magic', () => {
    const file = path.join(dir, 'v7.tar');
    tar(['-C', dir, '--format=v7', '-cf', file, 'f']);
    expect(tar(['-tf', file])).toBe('f\n');
    expect(parseError(fs.readFileSync(file))).toBe(`${WHAT}: the tar stream has not a ustar, pax or GNU tar header (unknown format) at byte 0`);
    expect(parseError(tarOf(member({ name: 'x', magic: 'none' })))).toContain('(unknown format) at byte 0');
  });

  it('numeric fields that are not octal', () => {
    expect(parse(tarOf(member({ name: 'ok', size: 0, patch: (b) => b.write(' 0000000001 ', 124, 12, 'latin1') }, 'a'))).entries[0]?.data.toString()).toBe('a');
    for (const text of ['0000000001x\0', '00000 00001\0', '-0000000001\0', '0000000009\0\0']) {
      expect(parseError(tarOf(member({ name: 'f', patch: (b) => b.write(text, 124, 12, 'latin1') })))).toBe(
        `${WHAT}: the tar stream has a size field that is not an octal number at byte 0`,
      );
    }
    expect(parseError(tarOf(member({ name: 'f', patch: (b) => b.write('0000648\0', 100, 8, 'latin1') })))).toContain('a mode field that is not an octal number at byte 0');
    expect(parseError(tarOf(member({ name: 'f', patch: (b) => b.write('0000x00\0', 108, 8, 'latin1') })))).toContain('a uid field that is not an octal number');
  });

  it('a negative base-256 size', () => {
    expect(parseError(tarOf(member({ name: 'f', patch: (b) => b.fill(0xff, 124, 136) })))).toBe(`${WHAT}: the tar stream has a negative size at byte 0`);
    expect(parseError(tarOf(member({ name: 'f', patch: (b) => b.fill(0xff, 116, 124) })))).toContain('a negative gid at byte 0');
  });

  it('a base-256 size beyond 2^53', () => {
    const sized = (v: bigint): Buffer => header({ name: 'huge', patch: (b) => base256(b, 124, 12, v) });
    const reader = new TarReader(WHAT);
    const [first] = [...reader.feed(sized(2n ** 53n - 1n))];
    expect(first?.kind === 'entry' && first.entry.size).toBe(Number.MAX_SAFE_INTEGER);
    expect(parseError(sized(2n ** 53n))).toBe(`${WHAT}: the tar stream has a size too large at byte 0`);
    expect(parseError(sized(2n ** 80n + 5n))).toBe(`${WHAT}: the tar stream has a size too large at byte 0`);
  });

  it('a uid or gid beyond 0xffffffff', () => {
    const owned = (field: number, v: bigint): Buffer => tarOf(member({ name: 'f', patch: (b) => base256(b, field, 8, v) }));
    const [e] = parse(owned(108, 0xffffffffn)).entries;
    expect(e?.entry.uid).toBe(0xffffffff);
    expect(parseError(owned(108, 0x100000000n))).toBe(`${WHAT}: the tar stream has a uid out of range (4294967296) at byte 0`);
    expect(parseError(owned(116, 0x100000000n))).toBe(`${WHAT}: the tar stream has a gid out of range (4294967296) at byte 0`);
  });

  it('a pax record larger than MAX_PAX_BYTES (refused from its header alone)', () => {
    // Exactly MAX_PAX_BYTES is read.
    const atMax = tarOf(paxMember('x', paxRecord('comment', 'c'.repeat(MAX_PAX_BYTES - 17))), member({ name: 'f' }));
    expect(parseInt(atMax.toString('latin1', 124, 135), 8)).toBe(MAX_PAX_BYTES);
    expect(parse(atMax, 'whole').entries[0]?.entry.pax?.comment?.length).toBe(MAX_PAX_BYTES - 17);
    for (const [type, kind] of [
      ['x', 'pax'],
      ['g', 'pax-global'],
    ]) {
      const claim = header({ name: 'PaxHeaders/f', type, size: MAX_PAX_BYTES + 1 });
      expect(parseError(claim)).toBe(`${WHAT}: the tar stream has a ${kind} record of ${MAX_PAX_BYTES + 1} bytes (more than ${MAX_PAX_BYTES}) at byte 0`);
      expect(parseError(Buffer.concat([member({ name: 'f' }, 'abc'), header({ name: 'PaxHeaders/f', type, size: 2 ** 32 })]))).toContain(`record of ${2 ** 32} bytes (more than`);
    }
  });

  it('a GNU long name or long link larger than MAX_LONG_NAME_BYTES', () => {
    const longName = 'd/'.repeat((MAX_LONG_NAME_BYTES - 2) / 2) + 'f'; // with its NUL, exactly MAX_LONG_NAME_BYTES
    const atMax = tarOf(member({ name: '././@LongLink', type: 'L', magic: 'gnu' }, `${longName}\0`), member({ name: 'truncated', magic: 'gnu' }, 'z'));
    expect(parseInt(atMax.toString('latin1', 124, 135), 8)).toBe(MAX_LONG_NAME_BYTES);
    const [e] = parse(atMax, 'whole').entries;
    expect([e?.entry.name, e?.data.toString()]).toEqual([longName, 'z']);
    for (const [type, kind] of [
      ['L', 'long-name'],
      ['K', 'long-link'],
    ]) {
      const claim = header({ name: '././@LongLink', type, magic: 'gnu', size: MAX_LONG_NAME_BYTES + 1 });
      expect(parseError(claim)).toBe(`${WHAT}: the tar stream has a ${kind} record of ${MAX_LONG_NAME_BYTES + 1} bytes (more than ${MAX_LONG_NAME_BYTES}) at byte 0`);
    }
  });

  it('malformed pax records', () => {
    const withBody = (body: string): Buffer => tarOf(member({ name: 'first' }, 'abc'), paxMember('x', body), member({ name: 'f' }));
    expect(parse(withBody('12 path=foo\n')).entries.map((p) => p.entry.name)).toEqual(['first', 'foo']); // control
    const at = `at byte ${2 * BLOCK}`;
    expect(parseError(withBody('path=foo\n'))).toBe(`${WHAT}: the tar stream has a pax record without a length ${at}`);
    expect(parseError(withBody('123456789012 path=foo\n'))).toBe(`${WHAT}: the tar stream has a pax record without a length ${at}`);
    expect(parseError(withBody('x9 path=foo\n'))).toBe(`${WHAT}: the tar stream has a pax record with a bad length "x9" ${at}`);
    expect(parseError(withBody('012 path=foo\n'))).toBe(`${WHAT}: the tar stream has a pax record with a bad length "012" ${at}`);
    expect(parseError(withBody('30 path=foo\n'))).toBe(`${WHAT}: the tar stream has a pax record whose length does not match its text ${at}`);
    expect(parseError(withBody('11 path=foo\n'))).toBe(`${WHAT}: the tar stream has a pax record whose length does not match its text ${at}`);
    expect(parseError(withBody('12 path=foo\n13 path=foo\n'))).toBe(`${WHAT}: the tar stream has a pax record whose length does not match its text ${at}`);
    expect(parseError(withBody('11 pathfoo\n'))).toBe(`${WHAT}: the tar stream has a pax record without "=" ${at}`);
    expect(parseError(withBody('11 pathfoo\n9 path=x\n'))).toBe(`${WHAT}: the tar stream has a pax record without "=" ${at}`);
    expect(parseError(withBody('7 =abc\n'))).toBe(`${WHAT}: the tar stream has a pax record with an empty key ${at}`);
  });
});

// ---------------------------------------------------------------------------------------------------------------

describe('entry types', () => {
  const next = member({ name: 'next' }, 'hello');

  for (const [flag, type] of [
    ['1', 'link'],
    ['2', 'symlink'],
    ['3', 'character-device'],
    ['4', 'block-device'],
    ['5', 'directory'],
    ['6', 'fifo'],
  ]) {
    it(`'${flag}' (${type}) has no data whatever its size field says: the next block is a header, as in Go archive/tar`, () => {
      for (const plan of ['whole', 1] as Plan[]) {
        const r = parse(tarOf(header({ name: 'special', type: flag, size: 1000, linkname: 'target' }), next), plan);
        expect(r.entries.map((p) => [p.entry.name, p.entry.type, p.entry.size, p.data.toString()])).toEqual([
          ['special', type, 0, ''],
          ['next', 'file', 5, 'hello'],
        ]);
        expect(r.done).toBe(true);
      }
      // A pax size on it is ignored the same way.
      const r = parse(tarOf(paxMember('x', { size: '1000' }), header({ name: 'special', type: flag, linkname: 'target' }), next));
      expect(r.entries.map((p) => [p.entry.name, p.entry.size])).toEqual([
        ['special', 0],
        ['next', 5],
      ]);
    });
  }

  it('an entry with no data is followed at once by its entry-end', () => {
    const reader = new TarReader(WHAT);
    const events = [...reader.feed(tarOf(header({ name: 'l', type: '2', linkname: 't' }), member({ name: 'e' }), next))];
    expect(events.map((e) => e.kind)).toEqual(['entry', 'entry-end', 'entry', 'entry-end', 'entry', 'data', 'entry-end']);
  });

  it('an unknown typeflag is "unknown:<flag>" and its size bytes are its data', () => {
    const body = crypto.randomBytes(700);
    for (const plan of ['whole', 1, 513] as Plan[]) {
      const r = parse(tarOf(member({ name: 'sparse', type: 'S' }, body), member({ name: 'odd', type: '\x01' }, 'x'), next), plan);
      expect(r.entries.map((p) => [p.entry.name, p.entry.type, p.entry.size])).toEqual([
        ['sparse', 'unknown:S', 700],
        ['odd', 'unknown:\\x01', 1],
        ['next', 'file', 5],
      ]);
      expect(r.entries[0]?.data.equals(body)).toBe(true);
    }
  });

  it("'7' (contiguous file) and '0' carry data", () => {
    const r = parse(tarOf(member({ name: 'c', type: '7' }, 'contig'), member({ name: 'r', type: '0' }, 'regular')));
    expect(r.entries.map((p) => [p.entry.type, p.data.toString()])).toEqual([
      ['contiguous-file', 'contig'],
      ['file', 'regular'],
    ]);
  });

  it("a '\\0' typeflag is a file, or a directory (with no data) when the name ends in '/'", () => {
    const r = parse(tarOf(member({ name: 'old-file', type: '\0' }, 'data'), header({ name: 'old-dir/', type: '\0', size: 700 }), next));
    expect(r.entries.map((p) => [p.entry.name, p.entry.type, p.entry.size, p.data.toString()])).toEqual([
      ['old-file', 'file', 4, 'data'],
      ['old-dir/', 'directory', 0, ''],
      ['next', 'file', 5, 'hello'],
    ]);
    // Only '\0' marks directories that way: a '0' entry named "x/" stays a file (as in Go).
    expect(parse(tarOf(member({ name: 'x/', type: '0' }, 'ab'))).entries.map((p) => p.entry.type)).toEqual(['file']);
  });

  it("a '\\0' typeflag whose final name (a GNU long name or pax path) ends in '/' is a directory, as in Go archive/tar", () => {
    const dirName = `${'long-directory-name/'.repeat(8)}`;
    const viaLongName = tarOf(member({ name: '././@LongLink', type: 'L', magic: 'gnu' }, `${dirName}\0`), header({ name: dirName.slice(0, 99), type: '\0', magic: 'gnu' }), next);
    const viaPax = tarOf(paxMember('x', { path: dirName }), header({ name: 'truncated', type: '\0' }), next);
    for (const archive of [viaLongName, viaPax]) {
      const r = parse(archive);
      expect(r.entries.map((p) => [p.entry.name, p.entry.type])).toEqual([
        [dirName, 'directory'],
        ['next', 'file'],
      ]);
    }
  });
});
