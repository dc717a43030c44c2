import net from 'node:net';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../../src/common/errors.js';
import { BASE_CMDLINE, READY_PATTERN } from '../../src/guest-image/guest-contract.js';
import { loadGuestImage } from '../../src/guest-image/image.js';
import type { ConsoleLog } from '../../src/vmm/console-log.js';
import type { ExitStats } from '../../src/vmm/kvm/vm.js';
import { createVm } from '../../src/vmm/machine.js';
import { launchNative } from '../../src/vmm/native-backend.js';
import { QemuVm } from '../../src/vmm/qemu/machine.js';
import { FIND_AGENT_PORT } from '../../src/vmm/selfcheck/machine-check.js';

/**
 * Boot to readiness and guest-to-host console throughput, native VMM vs `qemu-system-x86_64
 * -enable-kvm -M microvm`, same kernel, initrd, vCPUs, memory and guest command. Runs where /dev/kvm
 * can boot Linux (the KVM lab here) and prints one `VRUN-BOOTBENCH {...}` line; bench/vmm.ts prints
 * the ratios. The guest opens the vrun.agent port, waits for one byte from the host, then writes
 * `STREAM_MIB` MiB into it and powers off a little later: the last writes can return while the VMM
 * still holds their buffers (QEMU's stream stalled short of the end when the guest halted at once).
 */

const STREAM_MIB = 8;

const guestCommand = (mib: number) =>
  FIND_AGENT_PORT +
  `exec 3<>$d && head -c 1 <&3 >/dev/null && dd if=/dev/zero bs=65536 count=${mib * 16} >&3 2>/dev/null; sleep 3; poweroff -f`;

interface Run {
  readyMs: number;
  guestUptimeS: number;
  streamMiBPerSec: number;
  streamError?: string;
}

interface NativeRun extends Run {
  /** createVm: kernel and initrd loaded into guest RAM, devices set up. */
  createMs: number;
  /** Exits up to the readiness line. */
  exits: ExitStats;
}

/** Connects to the port's socket, sends the go byte, and times `bytes` arriving (first byte to last). */
async function receive(socketPath: string, bytes: number, timeoutMs: number): Promise<number> {
  const s = net.connect(socketPath);
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    return await new Promise<number>((resolve, reject) => {
      let got = 0;
      let first = 0n;
      const timer = setTimeout(() => reject(new Error(`received ${got} of ${bytes} bytes in ${timeoutMs} ms`)), timeoutMs);
      s.on('data', (d: Buffer) => {
        if (got === 0) first = process.hrtime.bigint();
        got += d.length;
        if (got >= bytes) {
          clearTimeout(timer);
          const secs = Number(process.hrtime.bigint() - first) / 1e9;
          resolve(bytes / (1024 * 1024) / secs);
        }
      });
      s.write('g');
    });
  } finally {
    s.destroy();
  }
}

async function measure(which: string, console: ConsoleLog, started: number, socket: string): Promise<Run> {
  const ready = await console.waitFor(READY_PATTERN, 300_000, 'VRUN-READY').catch((err: unknown) => {
    throw new Error(`${which}: ${errorMessage(err)}; console: ${JSON.stringify(console.recent(30))}`);
  });
  const readyMs = Date.now() - started;
  process.stderr.write(`boot-bench: ${which} ready after ${readyMs} ms (guest uptime ${ready[1]} s)\n`);
  try {
    const streamMiBPerSec = await receive(socket, STREAM_MIB * 1024 * 1024, 120_000);
    return { readyMs, guestUptimeS: Number(ready[1]), streamMiBPerSec };
  } catch (err) {
    // The boot numbers stand on their own; a stream that stalls is reported, not fatal.
    const streamError = `${errorMessage(err)}; console: ${JSON.stringify(console.recent(5))}`;
    process.stderr.write(`boot-bench: ${which} stream failed: ${streamError}\n`);
    return { readyMs, guestUptimeS: Number(ready[1]), streamMiBPerSec: NaN, streamError };
  }
}

/** VRUN_BENCH_SPIN_NS / VRUN_BENCH_POST_WRITES=0 try other exit hand-off settings than the defaults. */
function exitTuning(): { answerSpinNs?: number; postWrites?: boolean } {
  const spin = process.env.VRUN_BENCH_SPIN_NS;
  const post = process.env.VRUN_BENCH_POST_WRITES;
  return { ...(spin ? { answerSpinNs: Number(spin) } : {}), ...(post ? { postWrites: post !== '0' } : {}) };
}

async function nativeRun(dir: string, vcpus: number): Promise<NativeRun> {
  const image = await loadGuestImage('guest-image');
  const socket = path.join(dir, 'native.sock');
  const started = Date.now();
  const m = await createVm({
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: `quiet vrun.cmd=${guestCommand(STREAM_MIB).replace(/ /g, '%20')}`,
    vcpus,
    memoryMiB: 512,
    ports: [{ name: 'vrun.agent', socket }],
    consoleLog: path.join(dir, 'native-console.log'),
    exits: exitTuning(),
  });
  const createMs = Date.now() - started;
  process.stderr.write(`boot-bench: native createVm took ${createMs} ms\n`);
  try {
    void m.start();
    let exits: ExitStats | undefined;
    void m.console.waitFor(READY_PATTERN, 300_000, 'VRUN-READY').then(
      () => (exits = m.vm.exitStats()),
      () => undefined,
    );
    const run = await measure('native', m.console, started, socket);
    const stats = exits ?? m.vm.exitStats();
    process.stderr.write(`boot-bench: native exits to readiness ${JSON.stringify({ ...stats, byAddress: stats.byAddress.slice(0, 40) })}\n`);
    return { ...run, createMs, exits: stats };
  } finally {
    await m.destroy();
  }
}

/**
 * The native VMM as vrun runs it: its own process under the jailer (src/vmm/native-process/), same guest and
 * command as nativeRun, whose in-process machine is the peer that prices the jail and the process start.
 */
async function jailedRun(dir: string, vcpus: number): Promise<Run> {
  const image = await loadGuestImage('guest-image');
  const runDir = path.join(dir, 'jailed-run');
  await mkdir(runDir, { mode: 0o700 });
  const socket = path.join(runDir, 'agent.sock');
  const started = Date.now();
  const vm = await launchNative(
    { backend: 'native', accel: 'kvm' },
    {
      kernel: image.kernel,
      initrd: image.initrd,
      cmdline: `quiet vrun.cmd=${guestCommand(STREAM_MIB).replace(/ /g, '%20')}`,
      vcpus,
      memoryMiB: 512,
      runDir,
      agentSocket: socket,
      shares: [],
      consoleLog: path.join(dir, 'jailed-console.log'),
    },
  );
  try {
    return await measure('jailed native', vm.console, started, socket);
  } finally {
    await vm.kill();
  }
}

async function qemuRun(dir: string, vcpus: number): Promise<Run> {
  const image = await loadGuestImage('guest-image');
  const socket = path.join(dir, 'qemu.sock');
  const started = Date.now();
  const vm = QemuVm.start(
    {
      kernel: image.kernel,
      initrd: image.initrd,
      cmdline: `${BASE_CMDLINE} quiet vrun.cmd=${guestCommand(STREAM_MIB).replace(/ /g, '%20')}`,
      vcpus,
      memoryMiB: 512,
      accel: 'kvm',
      ports: [{ name: 'vrun.agent', socketPath: socket }],
    },
    { consoleLog: path.join(dir, 'qemu-console.log') },
  );
  try {
    return await measure('qemu', vm.console, started, socket);
  } finally {
    await vm.kill();
  }
}

/**
 * Reads the kernel and initrd once so both VMMs load them from the page cache. Without it the first
 * VMM measured pays the cold read (over 9p in the KVM lab: seconds for the 100+ MiB initrd) and the
 * second one gets the cache for free.
 */
async function warmPageCache(files: string[]): Promise<void> {
  const buf = Buffer.alloc(8 << 20);
  for (const f of files) {
    const h = await open(f, 'r');
    try {
      while ((await h.read(buf, 0, buf.length)).bytesRead > 0);
    } finally {
      await h.close();
    }
  }
}

function emptyStats(): ExitStats {
  return { pioToJs: 0, mmioToJs: 0, pioNative: 0, answeredWhileSpinning: 0, postedWrites: 0, waitMs: 0, byAddress: [] };
}

export async function bootBench(vcpus: number, only?: 'native' | 'qemu'): Promise<Record<string, number | string | ExitStats>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-boot-bench-'));
  try {
    const image = await loadGuestImage('guest-image');
    await warmPageCache([image.kernel, image.initrd]);
    const skipped: NativeRun = { readyMs: NaN, guestUptimeS: NaN, streamMiBPerSec: NaN, createMs: NaN, exits: emptyStats() };
    const native = only === 'qemu' ? skipped : await nativeRun(dir, vcpus);
    const jailed = only === 'qemu' ? skipped : await jailedRun(dir, vcpus);
    const qemu = only === 'native' ? skipped : await qemuRun(dir, vcpus);
    return {
      nativeCreateMs: native.createMs,
      nativeExits: { ...native.exits, byAddress: native.exits.byAddress.slice(0, 24) },
      vcpus,
      streamMiB: STREAM_MIB,
      nativeReadyMs: native.readyMs,
      nativeGuestUptimeS: native.guestUptimeS,
      nativeStreamMiBPerSec: Number(native.streamMiBPerSec.toFixed(2)),
      jailedReadyMs: jailed.readyMs,
      jailedGuestUptimeS: jailed.guestUptimeS,
      jailedStreamMiBPerSec: Number(jailed.streamMiBPerSec.toFixed(2)),
      qemuReadyMs: qemu.readyMs,
      qemuGuestUptimeS: qemu.guestUptimeS,
      qemuStreamMiBPerSec: Number(qemu.streamMiBPerSec.toFixed(2)),
      ...(native.streamError ? { nativeStreamError: native.streamError } : {}),
      ...(jailed.streamError ? { jailedStreamError: jailed.streamError } : {}),
      ...(qemu.streamError ? { qemuStreamError: qemu.streamError } : {}),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const only = process.argv[3];
  bootBench(Number(process.argv[2] ?? 2), only === 'native' || only === 'qemu' ? only : undefined).then(
    (r) => {
      process.stdout.write(`VRUN-BOOTBENCH ${JSON.stringify(r)}\n`);
      process.exit(0);
    },
    (err: unknown) => {
      process.stderr.write(`boot-bench: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
