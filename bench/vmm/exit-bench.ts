import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../../src/common/errors.js';
import { Vm } from '../../src/vmm/kvm/vm.js';
import { enterProtectedMode } from '../../src/vmm/selfcheck/payloads.js';

/**
 * The measuring half of bench/vmm.ts; it runs where /dev/kvm works (directly or in the KVM lab).
 * One payload — a multiboot image that writes to port 0x10 N times, then to QEMU's isa-debug-exit
 * port — runs on the native VMM and on `qemu-system-x86_64 -enable-kvm`. Rates come from the
 * difference between an N-iteration run and a 0-iteration run, so start-up cost cancels out.
 * Resident memory excludes guest RAM on both sides (both map it from a memfd: RssShmem).
 * Prints one `VRUN-BENCH {...}` JSON line.
 */

const LOAD = 0x10_0000;
const ENTRY = LOAD + 32;
const COUNT_PORT = 0x10;
const EXIT_PORT = 0xf4;

/**
 * A flat multiboot (a.out kludge) image: header, then 32-bit code looping `iterations` port writes
 * (`out`) or reads (`in`). A read is a full round trip to the device model; a write may be posted.
 */
export function exitPayload(iterations: number, op: 'out' | 'in' = 'out'): Buffer {
  const hdr = Buffer.alloc(32);
  const magic = 0x1bad_b002;
  const flags = 0x0001_0000;
  hdr.writeUInt32LE(magic, 0);
  hdr.writeUInt32LE(flags, 4);
  hdr.writeUInt32LE((0x1_0000_0000 - ((magic + flags) % 0x1_0000_0000)) % 0x1_0000_0000, 8);
  hdr.writeUInt32LE(LOAD, 12); // header_addr
  hdr.writeUInt32LE(LOAD, 16); // load_addr
  hdr.writeUInt32LE(0, 20); // load_end_addr: the whole file
  hdr.writeUInt32LE(0, 24); // bss_end_addr: none
  hdr.writeUInt32LE(ENTRY, 28);
  const n = Buffer.alloc(4);
  n.writeUInt32LE(iterations >>> 0);
  const code = Buffer.from([
    0xb9, ...n, // mov ecx, iterations
    0xe3, 0x05, // jecxz done
    op === 'out' ? 0xe6 : 0xe4, COUNT_PORT, // loop: out COUNT_PORT, al (or in al, COUNT_PORT)
    0x49, // dec ecx
    0x75, 0xfb, // jnz loop
    0xb0, 0x00, 0xe6, EXIT_PORT, // done: mov al,0; out EXIT_PORT, al
    0xf4, 0xeb, 0xfd, // hlt; jmp $-3
  ]);
  return Buffer.concat([hdr, code]);
}

async function nativeRun(iterations: number, op: 'out' | 'in' = 'out'): Promise<{ ms: number; exits: number }> {
  // VRUN_BENCH_SPIN_NS tries another answer spin than the default.
  const spin = process.env.VRUN_BENCH_SPIN_NS;
  const vm = new Vm({ memBytes: 4 * 1024 * 1024, vcpus: 1, ...(spin ? { answerSpinNs: Number(spin) } : {}) });
  try {
    let exits = 0;
    vm.pio.insert(COUNT_PORT, 1, { name: 'count', read: () => (exits++, 0), write: () => void exits++ });
    vm.pio.insert(EXIT_PORT, 4, { name: 'exit', read: () => 0, write: () => vm.stop() });
    exitPayload(iterations, op).copy(vm.ram, LOAD);
    enterProtectedMode(vm, ENTRY);
    const t0 = process.hrtime.bigint();
    await vm.run();
    return { ms: Number(process.hrtime.bigint() - t0) / 1e6, exits };
  } finally {
    vm.destroy();
  }
}

function qemuArgs(kernel: string, extra: string[] = []): string[] {
  return [
    '-enable-kvm', '-M', 'pc', '-m', '16', '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'none',
    '-kernel', kernel, '-device', `isa-debug-exit,iobase=${EXIT_PORT},iosize=4`, ...extra,
  ];
}

async function qemuRun(kernel: string): Promise<number> {
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve, reject) => {
    const p = spawn('qemu-system-x86_64', qemuArgs(kernel), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    // isa-debug-exit makes QEMU exit with (value << 1) | 1 = 1.
    p.on('exit', (code) => (code === 1 ? resolve() : reject(new Error(`qemu exited ${code}: ${err.trim()}`))));
  });
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** RssAnon + RssFile in KiB: resident memory that is not the shared-memory guest RAM. */
function rssExcludingGuest(pid: number | 'self'): { kib: number; shmemKib: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { kib: field('RssAnon') + field('RssFile'), shmemKib: field('RssShmem') };
}

const QEMU_FACTOR = 10;

async function best(run: () => Promise<number>): Promise<number> {
  const a = await run();
  const b = await run();
  return Math.min(a, b);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function qemuRss(kernel: string): Promise<number> {
  const p = spawn('qemu-system-x86_64', qemuArgs(kernel, ['-object', 'memory-backend-memfd,id=ram,size=16M', '-machine', 'memory-backend=ram']), {
    stdio: 'ignore',
  });
  try {
    await sleep(3000);
    if (p.pid === undefined || p.exitCode !== null) throw new Error('qemu did not stay up for the memory measurement');
    return rssExcludingGuest(p.pid).kib;
  } finally {
    p.kill('SIGKILL');
  }
}

/** The native VMM measured in a fresh process, so nothing else this process loaded is counted. */
async function nativeRss(): Promise<number> {
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(process.execPath, [process.argv[1]!, 'rss-child'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    p.stdout.on('data', (d: Buffer) => (s += d.toString()));
    p.on('error', reject);
    p.on('exit', () => resolve(s));
  });
  const m = /RSS (\d+)/.exec(out);
  if (!m) throw new Error(`native memory child printed ${JSON.stringify(out)}`);
  return Number(m[1]);
}

async function rssChild(): Promise<void> {
  const vm = new Vm({ memBytes: 16 * 1024 * 1024, vcpus: 1 });
  vm.pio.insert(COUNT_PORT, 1, { name: 'count', read: () => 0, write: () => {} });
  exitPayload(0xffff_ffff).copy(vm.ram, LOAD);
  enterProtectedMode(vm, ENTRY);
  const done = vm.run();
  await sleep(3000);
  process.stdout.write(`RSS ${rssExcludingGuest('self').kib}\n`);
  vm.stop();
  await done;
  vm.destroy();
}

export async function measure(iterations: number): Promise<Record<string, number>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-exit-bench-'));
  try {
    // QEMU's start-up in the lab varies by more than a short loop takes, so QEMU runs QEMU_FACTOR
    // times the iterations, and every rate uses the faster of two runs.
    const qemuIterations = iterations * QEMU_FACTOR;
    const zero = path.join(dir, 'zero.bin');
    const loop = path.join(dir, 'loop.bin');
    const readLoop = path.join(dir, 'read-loop.bin');
    const forever = path.join(dir, 'forever.bin');
    writeFileSync(zero, exitPayload(0));
    writeFileSync(loop, exitPayload(qemuIterations));
    writeFileSync(readLoop, exitPayload(qemuIterations, 'in'));
    writeFileSync(forever, exitPayload(0xffff_ffff));
    await nativeRun(1000); // warm-up: addon load, JIT
    const native = async (n: number, op: 'out' | 'in') => {
      const run = await nativeRun(n, op);
      if (run.exits !== n) throw new Error(`native ${op} run saw ${run.exits} exits, expected ${n}`);
      return run.ms;
    };
    const n0 = await best(() => native(0, 'out'));
    const n1 = await best(() => native(iterations, 'out'));
    const r1 = await best(() => native(iterations, 'in'));
    const q0 = await best(() => qemuRun(zero));
    const q1 = await best(() => qemuRun(loop));
    const qr1 = await best(() => qemuRun(readLoop));
    const rate = (n: number, ms: number, base: number) => Math.round(n / (Math.max(ms - base, 1) / 1000));
    return {
      iterations,
      qemuIterations,
      nativeMs: n1,
      nativeBaseMs: n0,
      qemuMs: q1,
      qemuBaseMs: q0,
      nativeExitsPerSec: rate(iterations, n1, n0),
      qemuExitsPerSec: rate(qemuIterations, q1, q0),
      nativeReadsPerSec: rate(iterations, r1, n0),
      qemuReadsPerSec: rate(qemuIterations, qr1, q0),
      nativeRssKiB: await nativeRss(),
      qemuRssKiB: await qemuRss(forever),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const arg = process.argv[2];
  const job = arg === 'rss-child' ? rssChild() : measure(Number(arg ?? 20000)).then((r) => void process.stdout.write(`VRUN-BENCH ${JSON.stringify(r)}\n`));
  job.then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`exit-bench: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
