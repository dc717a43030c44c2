import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { VirtioConsole } from '../../src/vmm/virtio/devices/console.js';
import { CTRL } from '../../src/vmm/virtio/devices/console-control.js';
import { PortSocket } from '../../src/vmm/virtio/devices/console-socket.js';
import { VirtioRng } from '../../src/vmm/virtio/devices/rng.js';
import { REG, STATUS, VirtioMmio, type VirtioDevice } from '../../src/vmm/virtio/mmio.js';
import { GuardedRam, setUpQueues } from './helpers/virtq-driver.js';

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
  const drivers = setUpQueues(mmio, ram, device.queueMaxSizes.length, 16, 0x1000, 0x2000);
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

/**
 * A two-port console (hvc console + `vrun.agent`, port 1: rx queue 4, tx queue 5) brought up, with the
 * guest driver's side simulated: control messages both ways and the agent port's data queues.
 */
function consoleRig() {
  const dev = new VirtioConsole([{ name: 'console', console: true }, { name: 'vrun.agent' }]);
  const rig = bringUp(dev, [1 << 1, 1]);
  const [, , ctrlRx, ctrlTx, agentRx, agentTx] = rig.drivers;
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
  const ctrlBufs = new Map<number, number>();
  const postCtrlBuffers = (n: number) => {
    for (let i = 0; i < n; i++) {
      const at = alloc(128);
      ctrlBufs.set(ctrlRx!.addChain([{ addr: at, len: 128, write: true }]), at);
    }
    rig.notify(2);
  };
  /** The control messages the device put into the posted buffers since the last call. */
  const readCtrl = () =>
    ctrlRx!.takeUsed().map((u) => {
      const at = ctrlBufs.get(u.id)!;
      const b = rig.ram.ram.subarray(at, at + u.len);
      return { id: b.readUInt32LE(0), event: b.readUInt16LE(4), value: b.readUInt16LE(6), extra: b.subarray(8).toString() };
    });
  const rxBufs = new Map<number, number>();
  /** The agent's reads: posts a receive buffer and returns what the device filled since the last call. */
  const guestRead = () => {
    const at = alloc(256);
    rxBufs.set(agentRx!.addChain([{ addr: at, len: 256, write: true }]), at);
    rig.notify(4);
    return agentRx!
      .takeUsed()
      .map((u) => rig.ram.ram.toString('utf8', rxBufs.get(u.id)!, rxBufs.get(u.id)! + u.len))
      .join('');
  };
  const guestWrite = (text: string) => {
    const at = alloc(text.length);
    rig.ram.ram.write(text, at);
    agentTx!.addChain([{ addr: at, len: text.length }]);
    rig.notify(5);
  };
  /** The driver's probe: DEVICE_READY, then the agent port is added. */
  const driverReady = () => {
    sendCtrl(0, CTRL.DEVICE_READY, 1);
    sendCtrl(1, CTRL.PORT_READY, 1);
  };
  return { dev, ...rig, sendCtrl, postCtrlBuffers, readCtrl, alloc, agentTx: agentTx!, guestRead, guestWrite, driverReady };
}

async function waitFor(what: () => boolean): Promise<void> {
  while (!what()) await new Promise((r) => setTimeout(r, 5));
}

describe('virtio-console with named ports', () => {
  it('announces its ports by name and carries bytes both ways', () => {
    const c = consoleRig();
    expect(c.mmio.read(REG.CONFIG + 4, 4)).toBe(2); // max_nr_ports
    c.postCtrlBuffers(8);
    c.driverReady();
    expect(c.readCtrl()).toEqual([
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
    c.postCtrlBuffers(4);
    const at = c.alloc(4);
    c.drivers[3]!.addChain([{ addr: at, len: 4 }]); // too short
    c.notify(3);
    c.sendCtrl(9, CTRL.PORT_READY, 1); // no such port
    c.sendCtrl(9, CTRL.PORT_OPEN, 1);
    c.sendCtrl(0, 99, 1); // unknown event
    expect(c.readCtrl()).toEqual([]);
    expect(c.mmio.deviceStatus & STATUS.DEVICE_NEEDS_RESET).toBe(0);
    expect(c.ram.canariesIntact()).toBe(true);
  });

  it('tells the guest when the host side of a port connects and disconnects', () => {
    const c = consoleRig();
    const agent = c.dev.port('vrun.agent')!;
    c.postCtrlBuffers(8);
    // Before the guest has the port, the state is only remembered; PORT_READY announces it.
    agent.setHostConnected(false);
    expect(c.readCtrl()).toEqual([]);
    c.driverReady();
    const ready = c.readCtrl();
    expect(ready.filter((m) => m.event === CTRL.PORT_OPEN)).toEqual([]);
    expect(ready.map((m) => m.event)).toEqual([CTRL.DEVICE_ADD, CTRL.DEVICE_ADD, CTRL.PORT_NAME]);

    agent.setHostConnected(true);
    agent.setHostConnected(true); // no change, no message
    expect(c.readCtrl()).toEqual([{ id: 1, event: CTRL.PORT_OPEN, value: 1, extra: '' }]);

    // Host bytes the guest has not taken when the host goes belong to that session: they are dropped.
    agent.write(Buffer.from('old session'));
    expect(agent.pendingBytes).toBe(11);
    agent.setHostConnected(false);
    expect(agent.pendingBytes).toBe(0);
    expect(c.readCtrl()).toEqual([{ id: 1, event: CTRL.PORT_OPEN, value: 0, extra: '' }]);
    agent.setHostConnected(true);
    agent.write(Buffer.from('new session'));
    c.sendCtrl(1, CTRL.PORT_OPEN, 1);
    expect(c.guestRead()).toBe('new session');
    expect(c.readCtrl()).toEqual([{ id: 1, event: CTRL.PORT_OPEN, value: 1, extra: '' }]);

    // After a device reset the driver adds the port again and hears the state then.
    c.dev.reset();
    agent.setHostConnected(false);
    agent.setHostConnected(true);
    expect(c.readCtrl()).toEqual([]);
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

  /** The two-port rig with the agent port surfaced at a socket; `connect` opens a client that records what it reads. */
  async function socketRig() {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-port-'));
    const c = consoleRig();
    const sock = path.join(dir, 'agent.sock');
    const ps = await PortSocket.listen(sock, c.dev.port('vrun.agent')!);
    const clients: net.Socket[] = [];
    const connect = async () => {
      const s = net.connect(sock);
      clients.push(s);
      const got: Buffer[] = [];
      let closed = false;
      s.on('data', (d: Buffer) => got.push(d));
      s.on('close', () => (closed = true));
      s.on('error', () => undefined);
      await new Promise((r) => s.once('connect', r));
      return { s, text: () => Buffer.concat(got).toString(), closed: () => closed };
    };
    const done = () => {
      for (const s of clients) s.destroy();
      ps.close();
      fs.rmSync(dir, { recursive: true, force: true });
    };
    return { c, ps, agent: c.dev.port('vrun.agent')!, connect, done };
  }

  it('counts as connected until the first client, and disconnected once a client left and none took over', async () => {
    const { c, agent, connect, done } = await socketRig();
    try {
      // Before any client the guest's reads wait for bytes (as before clients were tracked).
      expect(agent.hostConnected).toBe(true);
      const early = await connect();
      early.s.write('stale');
      await waitFor(() => agent.pendingBytes === 5);
      early.s.destroy();
      await waitFor(() => !agent.hostConnected);
      expect(agent.pendingBytes).toBe(0);
      c.postCtrlBuffers(8);
      expect(c.readCtrl()).toEqual([]);
      c.driverReady();
      expect(c.readCtrl().map((m) => m.event)).toEqual([CTRL.DEVICE_ADD, CTRL.DEVICE_ADD, CTRL.PORT_NAME]);
      const next = await connect();
      await waitFor(() => agent.hostConnected);
      expect(c.readCtrl()).toEqual([{ id: 1, event: CTRL.PORT_OPEN, value: 1, extra: '' }]);
      next.s.write('fresh');
      c.sendCtrl(1, CTRL.PORT_OPEN, 1);
      await waitFor(() => agent.pendingBytes === 5);
      expect(c.guestRead()).toBe('fresh');
    } finally {
      done();
    }
  });

  it('a client that connects before the guest driver is ready makes the port host-connected once it is', async () => {
    const { c, agent, connect, done } = await socketRig();
    try {
      const gone = await connect();
      gone.s.destroy();
      await waitFor(() => !agent.hostConnected);
      const early = await connect();
      early.s.write('early bytes');
      await waitFor(() => agent.hostConnected && agent.pendingBytes === 11);
      c.postCtrlBuffers(8);
      expect(c.readCtrl()).toEqual([]);
      c.driverReady();
      expect(c.readCtrl().filter((m) => m.event === CTRL.PORT_OPEN)).toEqual([{ id: 1, event: CTRL.PORT_OPEN, value: 1, extra: '' }]);
      // Early bytes still wait for the guest to open the port.
      expect(c.guestRead()).toBe('');
      c.sendCtrl(1, CTRL.PORT_OPEN, 1);
      expect(c.guestRead()).toBe('early bytes');
    } finally {
      done();
    }
  });

  it('a second client waits while the first is attached, then takes over with a fresh host connection', async () => {
    const { c, ps, agent, connect, done } = await socketRig();
    try {
      c.postCtrlBuffers(12);
      c.driverReady();
      // No client yet, but the port counts as connected until the first one comes.
      expect(c.readCtrl().filter((m) => m.event === CTRL.PORT_OPEN)).toEqual([{ id: 1, event: CTRL.PORT_OPEN, value: 1, extra: '' }]);
      c.sendCtrl(1, CTRL.PORT_OPEN, 1); // the agent opens the port

      const first = await connect();
      first.s.write('one');
      await waitFor(() => agent.pendingBytes === 3);
      expect(c.guestRead()).toBe('one');

      // The reconnecting client opens its new connection before the old one is gone: it is kept waiting.
      const second = await connect();
      second.s.write('two');
      await waitFor(() => ps.waitingClients === 1);
      c.guestWrite('for the first');
      await waitFor(() => first.text() === 'for the first');
      expect(second.text()).toBe('');
      expect(second.closed()).toBe(false);
      expect(c.readCtrl()).toEqual([]); // the first client's attach changed nothing the guest sees

      // What the first sent and the guest never took is dropped with its session.
      first.s.write('stale');
      await waitFor(() => agent.pendingBytes === 5);
      first.s.destroy();
      // The guest sees the host side closed, and only after a gap (for its reader to see EOF) the next one.
      await waitFor(() => !agent.hostConnected);
      expect(c.readCtrl()).toEqual([{ id: 1, event: CTRL.PORT_OPEN, value: 0, extra: '' }]);
      expect(ps.waitingClients).toBe(1);
      expect(agent.pendingBytes).toBe(0);
      await waitFor(() => ps.waitingClients === 0 && agent.pendingBytes === 3);
      expect(c.readCtrl()).toEqual([{ id: 1, event: CTRL.PORT_OPEN, value: 1, extra: '' }]);
      expect(c.guestRead()).toBe('two');
      c.guestWrite('for the second');
      await waitFor(() => second.text() === 'for the second');
      expect(first.text()).toBe('for the first');

      // With nobody attached the guest hears PORT_OPEN 0 and its bytes go nowhere.
      second.s.destroy();
      await waitFor(() => !agent.hostConnected);
      expect(c.readCtrl()).toEqual([{ id: 1, event: CTRL.PORT_OPEN, value: 0, extra: '' }]);
      c.guestWrite('to nobody');
      const third = await connect();
      await waitFor(() => agent.hostConnected);
      third.s.write('three');
      await waitFor(() => agent.pendingBytes === 5);
      expect(c.guestRead()).toBe('three');
      c.guestWrite('for the third');
      await waitFor(() => third.text() === 'for the third');
    } finally {
      done();
    }
  });

  it('keeps a bounded number of clients waiting and forgets one that gives up', async () => {
    const { ps, agent, connect, done } = await socketRig();
    try {
      await connect();
      await waitFor(() => agent.hostConnected);
      const waiting = [];
      for (let i = 0; i < 4; i++) waiting.push(await connect());
      await waitFor(() => ps.waitingClients === 4);
      const refused = await connect();
      await waitFor(() => refused.closed());
      expect(ps.waitingClients).toBe(4);
      expect(waiting.every((w) => !w.closed())).toBe(true);
      waiting[0]!.s.destroy();
      await waitFor(() => ps.waitingClients === 3);
    } finally {
      done();
    }
  });
});
