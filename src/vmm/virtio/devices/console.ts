import { EventEmitter } from 'node:events';
import { VrunError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import type { ActivateContext, VirtioDevice } from '../mmio.js';
import type { Virtqueue } from '../queue.js';

/**
 * virtio-console (device id 3) with VIRTIO_CONSOLE_F_MULTIPORT: named ports the guest sees as
 * /dev/vport0pN (and /sys/class/virtio-ports/.../name), e.g. `vrun.agent`. Queue layout: port 0
 * rx/tx are queues 0/1, the control queues 2/3, port N >= 1 uses 2N+2 / 2N+3.
 *
 * Data from the host waits in a bounded backlog until the guest posts receive buffers; `write`
 * returns false past the high-water mark and the port emits 'drain' once the guest caught up, so a
 * stream can apply backpressure. Data from the guest is copied out of guest memory before it is
 * emitted ('data'), so listeners never hold views into guest RAM.
 *
 * The host side of a port has a connection state the guest sees (PORT_OPEN from the device: Linux's
 * host_connected; while it is 0 guest reads return EOF and writes block). A port starts connected, since
 * an in-process user is always there; a port surfaced as a socket (console-socket.ts) follows its
 * clients once the first one came, as with QEMU's chardev, so the guest sees each host session end.
 */

export const VIRTIO_ID_CONSOLE = 3;
export const VIRTIO_CONSOLE_F_MULTIPORT = 1n;

export const CTRL = {
  DEVICE_READY: 0,
  DEVICE_ADD: 1,
  DEVICE_REMOVE: 2,
  PORT_READY: 3,
  CONSOLE_PORT: 4,
  RESIZE: 5,
  PORT_OPEN: 6,
  PORT_NAME: 7,
} as const;

const QUEUE_SIZE = 256;
const CTRL_MSG_SIZE = 8;
/** Port names are short identifiers; the guest copies them into sysfs. */
const MAX_NAME = 64;
const HIGH_WATER = 1024 * 1024;
/** Control messages from the guest that are larger than this are not control messages. */
const MAX_CTRL_IN = 4096;

export interface ConsolePortSpec {
  name: string;
  /** The port the kernel uses as hvc0. */
  console?: boolean;
}

interface PortHooks {
  /** Host data is waiting: deliver what the guest has room for. */
  kick: () => void;
  /** The host side connected or disconnected: tell the guest, if it has the port yet. */
  hostChanged: (port: ConsolePort) => void;
}

export class ConsolePort extends EventEmitter<{ data: [Buffer]; open: []; close: []; drain: [] }> {
  /** The guest has the port open. */
  guestOpen = false;
  /** The guest driver added the port (PORT_READY), so it takes control messages about it. */
  guestReady = false;
  private connected = true;
  private backlog: Buffer[] = [];
  private backlogBytes = 0;
  private blocked = false;

  constructor(
    readonly id: number,
    readonly name: string,
    readonly isConsole: boolean,
    private readonly hooks: PortHooks,
  ) {
    super();
  }

  get hostConnected(): boolean {
    return this.connected;
  }

  /**
   * The host side's connection state. A disconnect drops the host bytes the guest has not taken yet:
   * they belong to a session that is gone, and the next session must start on a clean stream.
   */
  setHostConnected(connected: boolean): void {
    if (connected === this.connected) return;
    this.connected = connected;
    if (!connected) {
      this.backlog = [];
      this.backlogBytes = 0;
      this.blocked = false;
    }
    this.hooks.hostChanged(this);
  }

  /** Queues bytes for the guest; false means "stop writing until 'drain'". */
  write(data: Buffer): boolean {
    if (data.length > 0) {
      this.backlog.push(Buffer.from(data));
      this.backlogBytes += data.length;
      this.hooks.kick();
    }
    this.blocked = this.backlogBytes >= HIGH_WATER;
    return !this.blocked;
  }

  get pendingBytes(): number {
    return this.backlogBytes;
  }

  debugState(): Record<string, unknown> {
    return { name: this.name, guestReady: this.guestReady, guestOpen: this.guestOpen, hostConnected: this.connected, backlogBytes: this.backlogBytes, blocked: this.blocked };
  }

  /** Moves backlog into the guest's receive buffers; returns true if any chain was used. */
  fill(rx: Virtqueue): boolean {
    let used = false;
    while (this.backlogBytes > 0) {
      const chain = rx.pop();
      if (!chain) break;
      let written = 0;
      for (const dst of chain.writable) {
        let off = 0;
        while (off < dst.length && this.backlog.length > 0) {
          const head = this.backlog[0]!;
          const n = head.copy(dst, off);
          off += n;
          written += n;
          this.backlogBytes -= n;
          if (n === head.length) this.backlog.shift();
          else this.backlog[0] = head.subarray(n);
        }
      }
      rx.pushUsed(chain, written);
      used = true;
    }
    if (this.blocked && this.backlogBytes < HIGH_WATER / 2) {
      this.blocked = false;
      this.emit('drain');
    }
    return used;
  }

  reset(): void {
    this.backlog = [];
    this.backlogBytes = 0;
    this.guestReady = false;
    if (this.guestOpen) {
      this.guestOpen = false;
      this.emit('close');
    }
  }
}

export class VirtioConsole implements VirtioDevice {
  readonly name = 'console';
  readonly deviceId = VIRTIO_ID_CONSOLE;
  readonly features = 1n << VIRTIO_CONSOLE_F_MULTIPORT;
  readonly queueMaxSizes: number[];
  readonly configSize = 12;
  readonly ports: ConsolePort[];
  private ctx: ActivateContext | undefined;
  private ctrlOut: Buffer[] = [];

  constructor(
    specs: ConsolePortSpec[],
    private readonly logger?: Logger,
  ) {
    if (specs.length === 0 || specs.length > 31) throw new VrunError(`virtio-console needs 1 to 31 ports, not ${specs.length}`);
    const names = new Set<string>();
    for (const s of specs) {
      if (!/^[A-Za-z0-9._-]{1,64}$/.test(s.name) || s.name.length > MAX_NAME) throw new VrunError(`console port name ${JSON.stringify(s.name)} is not 1-64 of [A-Za-z0-9._-]`);
      if (names.has(s.name)) throw new VrunError(`console port name ${s.name} is used twice`);
      names.add(s.name);
    }
    if (specs.filter((s) => s.console).length > 1) throw new VrunError('only one console port can be the console');
    this.ports = specs.map((s, i) => new ConsolePort(i, s.name, s.console === true, { kick: () => this.flush(), hostChanged: (p) => this.hostChanged(p) }));
    this.queueMaxSizes = Array.from({ length: 2 * specs.length + 2 }, () => QUEUE_SIZE);
  }

  port(name: string): ConsolePort | undefined {
    return this.ports.find((p) => p.name === name);
  }

  readConfig(offset: number, size: number): number {
    const cfg = Buffer.alloc(this.configSize);
    cfg.writeUInt32LE(this.ports.length, 4); // max_nr_ports; cols/rows stay 0
    return cfg.readUIntLE(offset, size);
  }

  writeConfig(): void {
    // emerg_wr needs VIRTIO_CONSOLE_F_EMERG_WRITE, which is not offered: ignore.
  }

  activate(ctx: ActivateContext): void {
    this.ctx = ctx;
  }

  reset(): void {
    this.ctx = undefined;
    this.ctrlOut = [];
    for (const p of this.ports) p.reset();
  }

  debugState(): Record<string, unknown> {
    return { ports: this.ports.map((p) => p.debugState()), controlMessagesWaiting: this.ctrlOut.length };
  }

  private rxQueue(port: number): number {
    return port === 0 ? 0 : 2 * port + 2;
  }

  notify(index: number): void {
    if (!this.ctx) return;
    if (index === 3) this.controlIn();
    else if (index === 2 || this.isRx(index)) this.flush();
    else this.dataIn(index);
  }

  private isRx(index: number): boolean {
    return index === 0 || (index >= 4 && index % 2 === 0);
  }

  private portOfTx(index: number): ConsolePort | undefined {
    return index === 1 ? this.ports[0] : this.ports[(index - 3) / 2];
  }

  private dataIn(index: number): void {
    const q = this.ctx?.queues[index];
    const port = this.portOfTx(index);
    if (!this.ctx || !q || !port) return;
    for (let chain = q.pop(); chain; chain = q.pop()) {
      const data = Buffer.concat(chain.readable);
      q.pushUsed(chain, 0);
      if (data.length > 0) port.emit('data', data);
    }
    this.finish(q);
  }

  private controlIn(): void {
    const q = this.ctx?.queues[3];
    if (!this.ctx || !q) return;
    for (let chain = q.pop(); chain; chain = q.pop()) {
      const msg = chain.readableBytes <= MAX_CTRL_IN ? Buffer.concat(chain.readable) : Buffer.alloc(0);
      q.pushUsed(chain, 0);
      if (msg.length < CTRL_MSG_SIZE) {
        this.logger?.debug({ len: chain.readableBytes }, 'virtio-console: malformed control message ignored');
        continue;
      }
      this.handleControl(msg.readUInt32LE(0), msg.readUInt16LE(4), msg.readUInt16LE(6));
    }
    this.finish(q);
    this.flush();
  }

  private handleControl(id: number, event: number, value: number): void {
    switch (event) {
      case CTRL.DEVICE_READY:
        if (value !== 1) return;
        for (const p of this.ports) this.sendControl(p.id, CTRL.DEVICE_ADD, 0);
        return;
      case CTRL.PORT_READY: {
        const p = this.ports[id];
        if (!p || value !== 1) return;
        p.guestReady = true;
        if (p.isConsole) this.sendControl(p.id, CTRL.CONSOLE_PORT, 1);
        this.sendControl(p.id, CTRL.PORT_NAME, 0, Buffer.from(`${p.name}\0`));
        // A new port is host-disconnected in the guest (reads see EOF): only a connected host says so.
        if (p.hostConnected) this.sendControl(p.id, CTRL.PORT_OPEN, 1);
        return;
      }
      case CTRL.PORT_OPEN: {
        const p = this.ports[id];
        if (!p) return;
        const open = value === 1;
        if (open !== p.guestOpen) {
          p.guestOpen = open;
          p.emit(open ? 'open' : 'close');
        }
        return;
      }
      default:
        this.logger?.debug({ id, event, value }, 'virtio-console: control event ignored');
    }
  }

  private hostChanged(p: ConsolePort): void {
    // Before PORT_READY the guest has no such port yet; PORT_READY announces the state then.
    if (!this.ctx || !p.guestReady) return;
    this.sendControl(p.id, CTRL.PORT_OPEN, p.hostConnected ? 1 : 0);
    this.flush();
  }

  private sendControl(id: number, event: number, value: number, extra?: Buffer): void {
    const msg = Buffer.alloc(CTRL_MSG_SIZE + (extra?.length ?? 0));
    msg.writeUInt32LE(id, 0);
    msg.writeUInt16LE(event, 4);
    msg.writeUInt16LE(value, 6);
    extra?.copy(msg, CTRL_MSG_SIZE);
    // Bounded: a guest that never posts control buffers cannot make the host queue grow forever.
    if (this.ctrlOut.length < 1024) this.ctrlOut.push(msg);
  }

  /** Delivers pending control messages and port data into the guest's receive buffers. */
  private flush(): void {
    if (!this.ctx) return;
    const ctrl = this.ctx.queues[2];
    if (ctrl) {
      while (this.ctrlOut.length > 0) {
        const chain = ctrl.pop();
        if (!chain) break;
        const msg = this.ctrlOut.shift()!;
        // A control message must fit one buffer; the driver posts page-sized ones.
        const dst = chain.writable[0];
        const n = dst && dst.length >= msg.length ? msg.copy(dst) : 0;
        ctrl.pushUsed(chain, n);
      }
      this.finish(ctrl);
    }
    // Only into open ports: Linux discards what arrives on a port no process has open, so bytes the
    // host sent early wait here until the guest opens the port (PORT_OPEN), as QEMU's virtio-serial does.
    for (const p of this.ports) {
      const rx = this.ctx?.queues[this.rxQueue(p.id)];
      if (rx && p.guestOpen && p.pendingBytes > 0 && p.fill(rx)) this.finish(rx);
    }
  }

  private finish(q: Virtqueue): void {
    if (!this.ctx) return;
    if (q.error) this.ctx.fail(q.error.message);
    else if (q.needsInterrupt()) this.ctx.signalUsed();
  }
}
