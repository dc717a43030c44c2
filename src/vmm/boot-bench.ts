import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../common/errors.js';
import { loadGuestImage } from '../guest-image/image.js';
import type { ConsoleLog } from './console-log.js';
import { createVm } from './machine.js';
import { FIND_AGENT_PORT } from './machine-check.js';
import { BASE_CMDLINE, READY_PATTERN } from './qemu/guest-runner.js';
import { QemuVm } from './qemu/machine.js';

/**
 * Boot to readiness and guest-to-host console throughput, native VMM vs `qemu-system-x86_64
 * -enable-kvm -M microvm`, same kernel, initrd, vCPUs, memory and guest command. Runs where /dev/kvm
 * can boot Linux (the KVM lab here) and prints one `VRUN-BOOTBENCH {...}` line; bench/vmm.ts prints
 * the ratios. The guest opens the vrun.agent port, waits for one byte from the host, then writes
 * `STREAM_MIB` MiB into it and powers off.
 */

const STREAM_MIB = 8;

const guestCommand = (mib: number) =>
  FIND_AGENT_PORT +
  `exec 3<>$d && head -c 1 <&3 >/dev/null && dd if=/dev/zero bs=65536 count=${mib * 16} >&3 2>/dev/null; poweroff -f`;

interface Run {
  readyMs: number;
  guestUptimeS: number;
  streamMiBPerSec: number;
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

async function measure(console: ConsoleLog, started: number, socket: string): Promise<Run> {
  const ready = await console.waitFor(READY_PATTERN, 300_000, 'VRUN-READY');
  const readyMs = Date.now() - started;
  const streamMiBPerSec = await receive(socket, STREAM_MIB * 1024 * 1024, 300_000);
  return { readyMs, guestUptimeS: Number(ready[1]), streamMiBPerSec };
}

async function nativeRun(dir: string, vcpus: number): Promise<Run> {
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
  });
  try {
    void m.start();
    return await measure(m.console, started, socket);
  } finally {
    await m.destroy();
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
    return await measure(vm.console, started, socket);
  } finally {
    await vm.kill();
  }
}

export async function bootBench(vcpus: number): Promise<Record<string, number>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-boot-bench-'));
  try {
    const native = await nativeRun(dir, vcpus);
    const qemu = await qemuRun(dir, vcpus);
    return {
      vcpus,
      streamMiB: STREAM_MIB,
      nativeReadyMs: native.readyMs,
      nativeGuestUptimeS: native.guestUptimeS,
      nativeStreamMiBPerSec: Number(native.streamMiBPerSec.toFixed(2)),
      qemuReadyMs: qemu.readyMs,
      qemuGuestUptimeS: qemu.guestUptimeS,
      qemuStreamMiBPerSec: Number(qemu.streamMiBPerSec.toFixed(2)),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  bootBench(Number(process.argv[2] ?? 2)).then(
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
