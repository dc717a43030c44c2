import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VirtioConsole } from '../../src/vmm/virtio/devices/console.js';
import { CTRL } from '../../src/vmm/virtio/devices/console-control.js';
import { HOST_TX_CAP, MAX_TX_COPY, type ConsolePort } from '../../src/vmm/virtio/devices/console-port.js';
import { PortSocket } from '../../src/vmm/virtio/devices/console-socket.js';
import { REG, STATUS, VirtioMmio } from '../../src/vmm/virtio/mmio.js';
import { GuardedRam, setUpQueues, type Seg } from './helpers/virtq-driver.js';

/**
 * A hostile or merely fast guest against the console's bounds: the device is driven through its queues
 * over guest RAM, as Linux's virtio_console would drive it, and its ports are bridged to real unix sockets.
 */

const MiB = 1024 * 1024;
/** The caps these tests hold the device to (console-port.ts: MAX_TX_COPY, HOST_TX_CAP). */
const COPY_CAP = 64 * 1024;
const HOST_CAP = MiB;
/** What one read of a stream socket hands over (libuv's read buffer): the most a paused socket may have read ahead. */
const ONE_READ = 64 * 1024;
const QSIZE = 256;
/** Queues: port 0 (the console) rx 0 / tx 1, control rx 2 / tx 3, port 1 (`vrun.agent`) rx 4 / tx 5. */
const AGENT_RX = 4;
const AGENT_TX = 5;
const CONSOLE_TX = 1;
const CTRL_TX = 3;
const CTRL_AREA = 0x80000;
const DATA = 0x100000;

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

/** Brings the two-port console up the way Linux's virtio-mmio driver does, every queue QSIZE entries. */
function rig(ramBytes: number, eventIdx = false) {
  const dev = new VirtioConsole([{ name: 'console', console: true }, { name: 'vrun.agent' }]);
  const ram = new GuardedRam(ramBytes);
  const mmio = new VirtioMmio(dev, ram.memory, () => undefined);
  const w = (off: number, v: number) => mmio.write(off, 4, v);
  w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER);
  w(REG.DRIVER_FEATURES_SEL, 0);
  w(REG.DRIVER_FEATURES, (1 << 1) | (eventIdx ? 1 << 29 : 0)); // MULTIPORT, EVENT_IDX
  w(REG.DRIVER_FEATURES_SEL, 1);
  w(REG.DRIVER_FEATURES, 1); // VERSION_1
  w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK);
  const drivers = setUpQueues(mmio, ram, dev.queueMaxSizes.length, QSIZE, 0x10000, 0x4000);
  w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK);
  expect(mmio.deviceStatus & STATUS.DRIVER_OK).toBe(STATUS.DRIVER_OK);
  const notify = (q: number) => w(REG.QUEUE_NOTIFY, q);
  let ctrlAt = CTRL_AREA;
  const sendCtrl = (id: number, event: number, value: number) => {
    ram.ram.writeUInt32LE(id, ctrlAt);
    ram.ram.writeUInt16LE(event, ctrlAt + 4);
    ram.ram.writeUInt16LE(value, ctrlAt + 6);
    drivers[CTRL_TX]!.addChain([{ addr: ctrlAt, len: 8 }]);
    ctrlAt += 16;
    notify(CTRL_TX);
  };
  /** Chains the guest made available that the device has not taken yet. */
  const waitingInRing = (q: number) => {
    const s = (mmio.debugState().queues as Record<string, number>[])[q]!;
    return (s.availIdx! - s.lastAvail!) & 0xffff;
  };
  const needsReset = () => (mmio.deviceStatus & STATUS.DEVICE_NEEDS_RESET) !== 0;
  return { dev, ram, mmio, drivers, notify, sendCtrl, waitingInRing, needsReset };
}

/** Surfaces a port at a unix socket and connects one client to it. */
async function socketFor(dev: VirtioConsole, name: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-bounds-'));
  const sock = path.join(dir, `${name}.sock`);
  const ps = await PortSocket.listen(sock, dev.port(name)!);
  const client = net.connect(sock);
  client.on('error', () => undefined);
  cleanups.push(() => {
    client.destroy();
    ps.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  await new Promise((r) => client.once('connect', r));
  await waitFor(() => ps.clientReading);
  return { ps, client };
}

async function waitFor(what: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Waits until `value` stopped changing for `quietMs` (the event loop has had every chance to move more). */
async function settle(value: () => number, quietMs = 150): Promise<number> {
  let last = value();
  let since = Date.now();
  for (;;) {
    await new Promise((r) => setTimeout(r, 10));
    const v = value();
    if (v !== last) {
      last = v;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) return v;
  }
}

/**
 * What a port hands the host side ('data'): total, largest piece, and the most the host side held right
 * after a piece (this listener runs after the socket's, so its write is counted).
 */
function watch(port: ConsolePort) {
  const w = { bytes: 0, largest: 0, maxQueued: 0 };
  port.on('data', (d) => {
    w.bytes += d.length;
    w.largest = Math.max(w.largest, d.length);
    w.maxQueued = Math.max(w.maxQueued, port.stats.hostQueued);
  });
  return w;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('virtio-console transmit (guest to host) is bounded', () => {
  it('has the caps these tests assume', () => {
    expect(MAX_TX_COPY).toBe(COPY_CAP);
    expect(HOST_TX_CAP).toBe(HOST_CAP);
  });

  it('forwards a 16 x 64 MiB chain in small pieces, never holding more than the cap for a client that does not read', async () => {
    const BIG = 64 * MiB;
    const c = rig(DATA + BIG + MiB);
    // Byte k of the guest's stream is k & 0xff: the 16 descriptors all cover the same 64 MiB.
    const pattern = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    c.ram.ram.fill(pattern, DATA, DATA + BIG);
    const agent = c.dev.port('vrun.agent')!;
    const { client } = await socketFor(c.dev, 'vrun.agent');
    client.pause();
    const out = watch(agent);
    const before = process.memoryUsage().arrayBuffers;

    const segs: Seg[] = Array.from({ length: 16 }, () => ({ addr: DATA, len: BIG }));
    c.drivers[AGENT_TX]!.addChain(segs);
    c.notify(AGENT_TX);
    const forwarded = await settle(() => out.bytes);

    // What left the device: pieces of at most MAX_TX_COPY, the cap plus what the kernel's socket buffers
    // took, not the chain's 1 GiB; the chain is valid (the queue is fine) and stays in flight, not used.
    expect(out.largest).toBeLessThanOrEqual(COPY_CAP);
    expect(forwarded).toBeLessThan(HOST_CAP + 4 * MiB);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(32 * MiB);
    expect(c.needsReset()).toBe(false);
    expect(c.drivers[AGENT_TX]!.takeUsed()).toEqual([]);
    const s = agent.stats;
    expect(s.txForwarded).toBe(forwarded);
    expect(s.txLargestCopy).toBe(out.largest);
    expect(s.hostQueued).toBeLessThanOrEqual(HOST_CAP);
    expect(s.hostQueued).toBeGreaterThan(HOST_CAP - COPY_CAP); // it stopped because the socket was full
    expect(out.maxQueued).toBeLessThanOrEqual(HOST_CAP);

    // The client reads for a while: the device goes on with the same chain on each 'drain', in order.
    let received = 0;
    let inOrder = true;
    client.on('data', (d: Buffer) => {
      for (let i = 0; i < d.length; i += 4093) if (d[i] !== ((received + i) & 0xff)) inOrder = false;
      if (d[d.length - 1] !== ((received + d.length - 1) & 0xff)) inOrder = false;
      received += d.length;
    });
    client.resume();
    await waitFor(() => received >= 16 * MiB);
    expect(inOrder).toBe(true);
    expect(out.maxQueued).toBeLessThanOrEqual(HOST_CAP);
    expect(out.largest).toBeLessThanOrEqual(COPY_CAP);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(32 * MiB);

    // The client goes: the rest of the chain has nowhere to go, so it is consumed and dropped, not copied.
    client.destroy();
    await waitFor(() => !agent.hostConnected);
    expect(c.drivers[AGENT_TX]!.takeUsed()).toEqual([{ id: 0, len: 0 }]);
    const done = agent.stats;
    expect(done.txForwarded + done.txDropped).toBe(16 * BIG);
    expect(done.txDropped).toBeGreaterThan(15 * BIG);
    expect(done.txChains).toBe(1);
    expect(c.needsReset()).toBe(false);
    expect(c.ram.canariesIntact()).toBe(true);
  });

  it('a chain whose 16 x 64 MiB descriptors lie outside guest RAM breaks the queue and forwards nothing', async () => {
    const c = rig(2 * MiB);
    const agent = c.dev.port('vrun.agent')!;
    await socketFor(c.dev, 'vrun.agent');
    const out = watch(agent);
    // The guest's agent has the port open and a receive buffer posted.
    c.sendCtrl(1, CTRL.PORT_OPEN, 1);
    c.drivers[AGENT_RX]!.addChain([{ addr: DATA, len: 4096, write: true }]);
    c.notify(AGENT_RX);
    const before = process.memoryUsage().arrayBuffers;
    c.drivers[AGENT_TX]!.addChain(Array.from({ length: 16 }, () => ({ addr: DATA, len: 64 * MiB })));
    c.notify(AGENT_TX);
    expect(c.needsReset()).toBe(true);
    expect(c.mmio.lastError).toMatch(/outside guest RAM/);
    expect(c.drivers[AGENT_TX]!.takeUsed()).toEqual([]);
    // A device that asked for a reset stays still: host bytes arriving later touch no queue.
    agent.write(Buffer.from('late'));
    expect(c.drivers[AGENT_RX]!.takeUsed()).toEqual([]);
    agent.hostDrained();
    await new Promise((r) => setTimeout(r, 20));
    expect(c.drivers[AGENT_RX]!.takeUsed()).toEqual([]);
    expect(out.bytes).toBe(0);
    expect(agent.stats).toMatchObject({ txForwarded: 0, txDropped: 0, txChains: 0, txLargestCopy: 0, hostQueued: 0 });
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * MiB);
    expect(c.ram.canariesIntact()).toBe(true);
  });

  it('the console port is never held back (Linux spins for it): past the cap its bytes are dropped and counted', async () => {
    const c = rig(DATA + 16 * MiB + MiB);
    const port = c.dev.port('console')!;
    const { client } = await socketFor(c.dev, 'console');
    client.pause();
    const out = watch(port);
    c.drivers[CONSOLE_TX]!.addChain(Array.from({ length: 16 }, (_, i) => ({ addr: DATA + i * MiB, len: MiB })));
    c.notify(CONSOLE_TX);
    // Used within a few turns of the event loop (a pass forwards at most 1 MiB), whether the client reads or not.
    const used: { id: number; len: number }[] = [];
    await waitFor(() => used.push(...c.drivers[CONSOLE_TX]!.takeUsed()) > 0, 2000);
    expect(used).toEqual([{ id: 0, len: 0 }]);
    expect(c.waitingInRing(CONSOLE_TX)).toBe(0);
    expect(out.largest).toBeLessThanOrEqual(COPY_CAP);
    expect(out.bytes).toBeLessThan(16 * MiB);
    expect(out.maxQueued).toBeLessThanOrEqual(HOST_CAP);
    const s = port.stats;
    expect(s.txForwarded).toBe(out.bytes);
    expect(s.txForwarded + s.txDropped).toBe(16 * MiB);
  });

  it('leaves chains in the avail ring while the client does not read, then delivers everything in order', async () => {
    const c = rig(16 * MiB, true);
    const agent = c.dev.port('vrun.agent')!;
    const { client } = await socketFor(c.dev, 'vrun.agent');
    client.pause();
    const out = watch(agent);

    // The guest's writer: chains of four odd-sized descriptors (more than MAX_TX_COPY each, pieces that
    // straddle descriptors), each slot's buffers reused only once the device returned its chain.
    const TOTAL = 24 * MiB + 12345;
    const source = randomBytes(TOTAL);
    const SEG_LENS = [50_000, 50_001, 49_999, 46_000];
    const SLOTS = QSIZE / SEG_LENS.length;
    const SLOT_BYTES = 200 * 1024;
    const tx = c.drivers[AGENT_TX]!;
    let sent = 0;
    let slot = 0;
    let outstanding = 0;
    let returned = 0;
    const post = () => {
      let posted = false;
      while (outstanding < SLOTS && sent < TOTAL) {
        const base = DATA + (slot++ % SLOTS) * SLOT_BYTES;
        const segs: Seg[] = [];
        let at = base;
        for (const len of SEG_LENS) {
          const n = Math.min(len, TOTAL - sent);
          if (n === 0) break;
          source.copy(c.ram.ram, at, sent, sent + n);
          segs.push({ addr: at, len: n });
          at += n;
          sent += n;
        }
        tx.addChain(segs);
        outstanding++;
        posted = true;
      }
      if (posted) c.notify(AGENT_TX);
    };
    const reclaim = () => {
      const used = tx.takeUsed();
      outstanding -= used.length;
      returned += used.length;
    };

    post();
    const forwarded = await settle(() => out.bytes);
    reclaim();
    // Most of the guest's chains were not taken: they wait in the available ring, and the writer blocks.
    expect(outstanding).toBeGreaterThan(SLOTS / 2);
    expect(c.waitingInRing(AGENT_TX)).toBeGreaterThanOrEqual(outstanding - 1);
    expect(forwarded).toBeLessThan(HOST_CAP + 4 * MiB);
    expect(out.maxQueued).toBeLessThanOrEqual(HOST_CAP);
    expect(agent.stats.hostQueued).toBeLessThanOrEqual(HOST_CAP);
    expect(returned).toBe(agent.stats.txChains);

    // The client starts reading: the guest's writer goes on until the whole stream is through.
    const got: Buffer[] = [];
    let received = 0;
    client.on('data', (d: Buffer) => {
      got.push(d);
      received += d.length;
    });
    client.resume();
    while (received < TOTAL) {
      reclaim();
      post();
      await new Promise((r) => setTimeout(r, 1));
    }
    reclaim();
    expect(received).toBe(TOTAL);
    expect(sha(Buffer.concat(got))).toBe(sha(source));
    expect(out.maxQueued).toBeLessThanOrEqual(HOST_CAP);
    expect(out.largest).toBeLessThanOrEqual(COPY_CAP);
    expect(agent.stats).toMatchObject({ txForwarded: TOTAL, txDropped: 0, txChains: Math.ceil(TOTAL / 196_000) });
    expect(c.needsReset()).toBe(false);
    expect(c.ram.canariesIntact()).toBe(true);
  });
});

describe('virtio-console receive (host to guest) is bounded', () => {
  it('reads the socket only as far as the guest posts buffers; the rest waits in the kernel and none is lost', async () => {
    const c = rig(8 * MiB);
    const agent = c.dev.port('vrun.agent')!;
    const { ps, client } = await socketFor(c.dev, 'vrun.agent');
    c.sendCtrl(1, CTRL.PORT_OPEN, 1); // the guest's agent opens the port, but posts no receive buffers yet

    const TOTAL = 8 * MiB + 777;
    const source = randomBytes(TOTAL);
    client.write(source);
    await waitFor(() => agent.pendingBytes > 0);
    const pending = await settle(() => agent.pendingBytes);
    expect(pending).toBeGreaterThan(0);
    expect(pending).toBeLessThanOrEqual(ONE_READ);
    expect(ps.clientReading).toBe(false);
    expect(agent.stats.rxDelivered).toBe(0);
    // The rest was never read: it is still in the client's buffer and the kernel's socket buffers.
    expect(client.writableLength).toBeGreaterThan(TOTAL - 4 * MiB);

    // The guest reads: a few page-sized buffers at a time, reposted as it consumes them.
    const rx = c.drivers[AGENT_RX]!;
    const PAGE = 4096;
    const posted: number[] = [];
    let slot = 0;
    const got: Buffer[] = [];
    let received = 0;
    let maxPending = pending;
    while (received < TOTAL) {
      for (const u of rx.takeUsed()) {
        const at = posted.shift()!;
        got.push(Buffer.from(c.ram.ram.subarray(at, at + u.len)));
        received += u.len;
      }
      for (let i = 0; i < 8 && posted.length < QSIZE; i++) {
        const at = DATA + (slot++ % QSIZE) * PAGE;
        rx.addChain([{ addr: at, len: PAGE, write: true }]);
        posted.push(at);
      }
      c.notify(AGENT_RX);
      maxPending = Math.max(maxPending, agent.pendingBytes);
      await new Promise((r) => setTimeout(r, 1));
      maxPending = Math.max(maxPending, agent.pendingBytes);
    }
    expect(received).toBe(TOTAL);
    expect(sha(Buffer.concat(got))).toBe(sha(source));
    expect(maxPending).toBeLessThanOrEqual(ONE_READ);
    expect(agent.stats.rxDelivered).toBe(TOTAL);
    expect(c.needsReset()).toBe(false);
  });
});
