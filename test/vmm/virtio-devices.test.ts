import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CTRL, VirtioConsole } from '../../src/vmm/virtio/devices/console.js';
import { PortSocket } from '../../src/vmm/virtio/devices/console-socket.js';
import { VirtioRng } from '../../src/vmm/virtio/devices/rng.js';
import { REG, STATUS, VirtioMmio, type VirtioDevice } from '../../src/vmm/virtio/mmio.js';
import { GuardedRam, SimDriver } from './helpers/virtq-driver.js';

/** Brings a device up the way Linux's virtio-mmio driver does, with every queue enabled. */
function bringUp(device: VirtioDevice, features: [number, number]) {
  const ram = new GuardedRam(512 * 1024);
  let irqs = 0;
  const mmio = new VirtioMmio(device, ram.memory, (level) => (irqs += level ? 1 : 0));
  const w = (off: number, v: number) => mmio.write(off, 4, v);
  w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER);
  w(REG.DRIVER_FEATURES_SEL, 0);
  w(REG.DRIVER_FEATURES, features[0]);
  w(REG.DRIVER_FEATURES_SEL, 1);
  w(REG.DRIVER_FEATURES, features[1]);
  w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK);
  const drivers = device.queueMaxSizes.map((_, i) => {
    const d = new SimDriver(ram, 16, 0x1000 + i * 0x2000);
    w(REG.QUEUE_SEL, i);
    w(REG.QUEUE_NUM, 16);
    w(REG.QUEUE_DESC_LOW, d.descAddr);
    w(REG.QUEUE_DRIVER_LOW, d.availAddr);
    w(REG.QUEUE_DEVICE_LOW, d.usedAddr);
    w(REG.QUEUE_READY, 1);
    return d;
  });
  w(REG.STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK);
  expect(mmio.deviceStatus & STATUS.DRIVER_OK).toBe(STATUS.DRIVER_OK);
  return { ram, mmio, drivers, notify: (q: number) => w(REG.QUEUE_NOTIFY, q), irqs: () => irqs };
}

const DATA = 0x40000;

describe('virtio-rng', () => {
  it('fills the buffers the guest posts with random bytes', () => {
    const rng = new VirtioRng();
    const { ram, drivers, notify, irqs } = bringUp(rng, [0, 1]);
    const head = drivers[0]!.addChain([{ addr: DATA, len: 64, write: true }, { addr: DATA + 0x100, len: 32, write: true }]);
    notify(0);
    expect(drivers[0]!.takeUsed()).toEqual([{ id: head, len: 96 }]);
    const bytes = ram.ram.subarray(DATA, DATA + 64);
    expect(bytes.equals(Buffer.alloc(64))).toBe(false);
    expect(new Set(bytes).size).toBeGreaterThan(16);
    expect(irqs()).toBe(1);
    expect(rng.served).toBe(96);
  });
});

describe('virtio-console with named ports', () => {
  function consoleRig() {
    const dev = new VirtioConsole([{ name: 'console', console: true }, { name: 'vrun.agent' }]);
    const rig = bringUp(dev, [1 << 1, 1]);
    const [, , ctrlRx, ctrlTx, , agentTx] = rig.drivers;
    let next = DATA;
    const alloc = (n: number) => {
      const a = next;
      next += Math.ceil(n / 16) * 16;
      return a;
    };
    const sendCtrl = (id: number, event: number, value: number) => {
      const at = alloc(8);
      rig.ram.ram.writeUInt32LE(id, at);
      rig.ram.ram.writeUInt16LE(event, at + 4);
      rig.ram.ram.writeUInt16LE(value, at + 6);
      ctrlTx!.addChain([{ addr: at, len: 8 }]);
      rig.notify(3);
    };
    const postCtrlBuffers = (n: number) => {
      const bufs: number[] = [];
      for (let i = 0; i < n; i++) {
        const at = alloc(128);
        bufs.push(at);
        ctrlRx!.addChain([{ addr: at, len: 128, write: true }]);
      }
      rig.notify(2);
      return bufs;
    };
    const readCtrl = (bufs: number[]) =>
      ctrlRx!.takeUsed().map((u, i) => {
        const at = bufs[i]!;
        const b = rig.ram.ram.subarray(at, at + u.len);
        return { id: b.readUInt32LE(0), event: b.readUInt16LE(4), value: b.readUInt16LE(6), extra: b.subarray(8).toString() };
      });
    return { dev, ...rig, sendCtrl, postCtrlBuffers, readCtrl, alloc, agentTx: agentTx! };
  }

  it('announces its ports by name and carries bytes both ways', () => {
    const c = consoleRig();
    expect(c.mmio.read(REG.CONFIG + 4, 4)).toBe(2); // max_nr_ports
    const bufs = c.postCtrlBuffers(8);
    c.sendCtrl(0, CTRL.DEVICE_READY, 1);
    c.sendCtrl(1, CTRL.PORT_READY, 1);
    expect(c.readCtrl(bufs)).toEqual([
      { id: 0, event: CTRL.DEVICE_ADD, value: 0, extra: '' },
      { id: 1, event: CTRL.DEVICE_ADD, value: 0, extra: '' },
      { id: 1, event: CTRL.PORT_NAME, value: 0, extra: 'vrun.agent\0' },
      { id: 1, event: CTRL.PORT_OPEN, value: 1, extra: '' },
    ]);

    const agent = c.dev.port('vrun.agent')!;
    const opened: string[] = [];
    agent.on('open', () => opened.push('open'));
    agent.on('close', () => opened.push('close'));
    c.sendCtrl(1, CTRL.PORT_OPEN, 1);
    expect(opened).toEqual(['open']);

    // Host to guest: data waits until the guest posts receive buffers, then fills them in order.
    expect(agent.write(Buffer.from('hello, '))).toBe(true);
    agent.write(Buffer.from('guest'));
    const rx = c.drivers[4]!;
    const r1 = c.alloc(8);
    const r2 = c.alloc(64);
    rx.addChain([{ addr: r1, len: 8, write: true }]);
    rx.addChain([{ addr: r2, len: 64, write: true }]);
    c.notify(4);
    const used = rx.takeUsed();
    expect(used.map((u) => u.len)).toEqual([8, 4]);
    expect(c.ram.ram.toString('utf8', r1, r1 + 8) + c.ram.ram.toString('utf8', r2, r2 + 4)).toBe('hello, guest');

    // Guest to host: every transmitted chain becomes a 'data' event with a copy of the bytes.
    const got: Buffer[] = [];
    agent.on('data', (d) => got.push(d));
    const t = c.alloc(16);
    c.ram.ram.write('from the guest', t);
    c.agentTx.addChain([{ addr: t, len: 14 }]);
    c.notify(5);
    expect(Buffer.concat(got).toString()).toBe('from the guest');
    c.ram.ram.fill(0, t, t + 16);
    expect(Buffer.concat(got).toString()).toBe('from the guest');

    c.sendCtrl(1, CTRL.PORT_OPEN, 0);
    expect(opened).toEqual(['open', 'close']);
  });

  it('applies backpressure past its high-water mark and drains as the guest reads', () => {
    const c = consoleRig();
    const agent = c.dev.port('vrun.agent')!;
    let drained = 0;
    agent.on('drain', () => drained++);
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    const accepted = [agent.write(chunk), agent.write(chunk), agent.write(chunk), agent.write(chunk)];
    expect(accepted).toEqual([true, true, true, false]);
    const rx = c.drivers[4]!;
    // Linux drops what arrives on a port no process has open: nothing moves until the guest opens it.
    rx.addChain([{ addr: 0x60000, len: 32 * 1024, write: true }]);
    c.notify(4);
    expect(rx.takeUsed()).toEqual([]);
    c.sendCtrl(1, CTRL.PORT_OPEN, 1);
    let total = rx.takeUsed().reduce((n, u) => n + u.len, 0);
    expect(total).toBe(32 * 1024);
    while (agent.pendingBytes > 0) {
      for (let i = 0; i < 16; i++) rx.addChain([{ addr: 0x60000, len: 32 * 1024, write: true }]);
      c.notify(4);
      total += rx.takeUsed().reduce((n, u) => n + u.len, 0);
    }
    expect(total).toBe(4 * chunk.length);
    expect(drained).toBe(1);
  });

  it('ignores malformed control messages and unknown ports', () => {
    const c = consoleRig();
    const bufs = c.postCtrlBuffers(4);
    const at = c.alloc(4);
    c.drivers[3]!.addChain([{ addr: at, len: 4 }]); // too short
    c.notify(3);
    c.sendCtrl(9, CTRL.PORT_READY, 1); // no such port
    c.sendCtrl(9, CTRL.PORT_OPEN, 1);
    c.sendCtrl(0, 99, 1); // unknown event
    expect(c.readCtrl(bufs)).toEqual([]);
    expect(c.mmio.deviceStatus & STATUS.DEVICE_NEEDS_RESET).toBe(0);
    expect(c.ram.canariesIntact()).toBe(true);
  });

  it('refuses bad port lists', () => {
    expect(() => new VirtioConsole([])).toThrow(/1 to 31 ports/);
    expect(() => new VirtioConsole([{ name: 'a b' }])).toThrow(/not 1-64/);
    expect(() => new VirtioConsole([{ name: 'a' }, { name: 'a' }])).toThrow(/used twice/);
  });
});

describe('console port surfaced as a unix socket', () => {
  it('carries bytes between a socket client and the guest queues', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-port-'));
    const dev = new VirtioConsole([{ name: 'vrun.agent' }]);
    const { ram, drivers, notify } = bringUp(dev, [1 << 1, 1]);
    const ps = await PortSocket.listen(path.join(dir, 'agent.sock'), dev.port('vrun.agent')!);
    try {
      const client = net.connect(path.join(dir, 'agent.sock'));
      const received: Buffer[] = [];
      client.on('data', (d: Buffer) => received.push(d));
      await new Promise((r) => client.once('connect', r));
      client.write('to-guest');
      while (dev.port('vrun.agent')!.pendingBytes < 8) await new Promise((r) => setTimeout(r, 5));
      // The guest opens the port (control message PORT_OPEN for port 0), then posts a receive buffer.
      ram.ram.writeUInt32LE(0, DATA + 0x200);
      ram.ram.writeUInt16LE(CTRL.PORT_OPEN, DATA + 0x204);
      ram.ram.writeUInt16LE(1, DATA + 0x206);
      drivers[3]!.addChain([{ addr: DATA + 0x200, len: 8 }]);
      notify(3);
      drivers[0]!.addChain([{ addr: DATA, len: 64, write: true }]);
      notify(0);
      expect(drivers[0]!.takeUsed()).toEqual([{ id: 0, len: 8 }]);
      expect(ram.ram.toString('utf8', DATA, DATA + 8)).toBe('to-guest');
      ram.ram.write('to-host', DATA + 0x100);
      drivers[1]!.addChain([{ addr: DATA + 0x100, len: 7 }]);
      notify(1);
      while (Buffer.concat(received).length < 7) await new Promise((r) => setTimeout(r, 5));
      expect(Buffer.concat(received).toString()).toBe('to-host');
      client.destroy();
    } finally {
      ps.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
