import { EventEmitter } from 'node:events';
import { VrunError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import type { ActivateContext, VirtioDevice } from '../mmio.js';
import type { DescriptorChain, Virtqueue } from '../queue.js';

/**
 * virtio-console (device id 3) with VIRTIO_CONSOLE_F_MULTIPORT: named ports the guest sees as
 * /dev/vport0pN (and /sys/class/virtio-ports/.../name), e.g. `vrun.agent`. Queue layout: port 0
 * rx/tx are queues 0/1, the control queues 2/3, port N >= 1 uses 2N+2 / 2N+3.
 *
 * Data from the host waits in a bounded backlog until the guest posts receive buffers; `write`
 * returns false past the high-water mark and the port emits 'drain' once the guest caught up, so a
 * stream can apply backpressure ('flushed' says the guest took everything, for a host side that keeps
 * nothing in the backlog it does not have to). Data from the guest is copied out of guest memory in
 * pieces of at most MAX_TX_COPY before it is emitted ('data'), so listeners never hold views into guest
 * RAM, and a host side that buffers (a socket) holds the guest back once HOST_TX_CAP bytes wait in it.
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
/**
 * Control messages waiting for the guest to post control buffers. A driver needs about four per port
 * (DEVICE_ADD, CONSOLE_PORT, PORT_NAME, PORT_OPEN) and posts a full queue of buffers, so this is only
 * reached by a guest that asks again and again (DEVICE_READY) and never reads: at most ~80 bytes each.
 */
const MAX_CTRL_OUT = 1024;

/**
 * The most guest bytes copied out of guest RAM at once. A transmit chain is a piece of a byte stream
 * whose size neither the spec nor Linux bounds (splice_write sends a whole pipe, up to pipe-max-size, as
 * one chain), so a chain past this is not cut short (that corrupts a legitimate stream) and not a broken
 * queue (that kills a legitimate guest): it is forwarded in pieces of at most this size, each only while
 * the host side has room, and stays in flight in between. QEMU's virtio-serial does the same (it keeps
 * the element and an offset into it while the chardev is throttled); Firecracker's vsock refuses
 * packets over 64 KiB, but a vsock packet has a length the protocol bounds, a console write does not.
 */
export const MAX_TX_COPY = 64 * 1024;
/**
 * Guest bytes the host side of a port may hold unsent (a socket's write buffer). At this mark the device
 * takes no more of the port's transmit chains: they stay in the available ring, the guest's writer
 * blocks, and the host side's 'drain' (ConsolePort.hostDrained) starts them again.
 */
export const HOST_TX_CAP = 1024 * 1024;
/**
 * What one notification may make the device do before it yields to the event loop: vCPUs run in
 * parallel with us, so a guest that posts as fast as we take would otherwise hold the loop for ever.
 */
const PASS_BYTES = HOST_TX_CAP;
const PASS_CHAINS = QUEUE_SIZE;

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
  /** The host side has room for guest bytes again. */
  txReady: (port: ConsolePort) => void;
}

export interface ConsolePortStats {
  /** Guest bytes handed to the host side ('data'). */
  txForwarded: number;
  /** Guest bytes consumed and not forwarded: no host connected, or the console port's host side was full. */
  txDropped: number;
  /** Transmit chains completed. */
  txChains: number;
  /** The largest single copy out of guest RAM; never above MAX_TX_COPY. */
  txLargestCopy: number;
  /** Guest bytes the host side holds unsent; never above HOST_TX_CAP. */
  hostQueued: number;
  /** Host bytes delivered into the guest's receive buffers. */
  rxDelivered: number;
  /** Host bytes waiting for receive buffers. */
  rxPending: number;
}

export class ConsolePort extends EventEmitter<{ data: [Buffer]; open: []; close: []; drain: []; flushed: [] }> {
  /** The guest has the port open. */
  guestOpen = false;
  /** The guest driver added the port (PORT_READY), so it takes control messages about it. */
  guestReady = false;
  private connected = true;
  private backlog: Buffer[] = [];
  private backlogBytes = 0;
  private blocked = false;
  private hostBuffer: () => number = () => 0;
  private readonly counters = { txForwarded: 0, txDropped: 0, txChains: 0, txLargestCopy: 0, rxDelivered: 0 };

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

  /**
   * For a host side that keeps what 'data' gives it until it can send it on: `queued` says how much that
   * is, and the device stops taking the guest's bytes at HOST_TX_CAP until `hostDrained`. An in-process
   * listener consumes each 'data' as it comes and needs neither.
   */
  setHostBuffer(queued: () => number): void {
    this.hostBuffer = queued;
  }

  /** The host side sent on what it held: the guest's waiting transmit chains are taken again. */
  hostDrained(): void {
    this.hooks.txReady(this);
  }

  /** Guest bytes the host side takes now. */
  hostRoom(): number {
    return HOST_TX_CAP - this.hostBuffer();
  }

  get stats(): ConsolePortStats {
    return { ...this.counters, hostQueued: this.hostBuffer(), rxPending: this.backlogBytes };
  }

  /** Called by the device for each piece of a transmit chain: not `forwarded` means consumed and dropped. */
  countTx(bytes: number, forwarded: boolean): void {
    if (forwarded) {
      this.counters.txForwarded += bytes;
      this.counters.txLargestCopy = Math.max(this.counters.txLargestCopy, bytes);
    } else {
      this.counters.txDropped += bytes;
    }
  }

  countTxChain(): void {
    this.counters.txChains++;
  }

  debugState(): Record<string, unknown> {
    return { name: this.name, guestReady: this.guestReady, guestOpen: this.guestOpen, hostConnected: this.connected, backlogBytes: this.backlogBytes, blocked: this.blocked, ...this.stats };
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
      this.counters.rxDelivered += written;
      used = true;
    }
    if (this.blocked && this.backlogBytes < HIGH_WATER / 2) {
      this.blocked = false;
      this.emit('drain');
    }
    if (used && this.backlogBytes === 0) this.emit('flushed');
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
  /** Per port, the transmit chain being forwarded piece by piece. */
  private txCursor: (TxCursor | undefined)[] = [];
  /** Work left over from a pass that hit its budget, waiting for setImmediate (keys: port id, or 'ctrl'). */
  private readonly scheduled = new Set<number | 'ctrl'>();

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
    this.ports = specs.map(
      (s, i) => new ConsolePort(i, s.name, s.console === true, { kick: () => this.flush(), hostChanged: (p) => this.hostChanged(p), txReady: (p) => this.dataIn(p) }),
    );
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
    this.txCursor = [];
    for (const p of this.ports) p.reset();
  }

  /** Per port: what went each way and what waits where. */
  stats(): Record<string, ConsolePortStats> {
    return Object.fromEntries(this.ports.map((p) => [p.name, p.stats]));
  }

  debugState(): Record<string, unknown> {
    return { ports: this.ports.map((p) => ({ ...p.debugState(), txChainInFlight: this.txCursor[p.id] !== undefined })), controlMessagesWaiting: this.ctrlOut.length };
  }

  private rxQueue(port: number): number {
    return port === 0 ? 0 : 2 * port + 2;
  }

  private txQueue(port: number): number {
    return port === 0 ? 1 : 2 * port + 3;
  }

  notify(index: number): void {
    if (!this.ctx) return;
    if (index === 3) this.controlIn();
    else if (index === 2 || this.isRx(index)) this.flush();
    else {
      const port = this.portOfTx(index);
      if (port) this.dataIn(port);
    }
  }

  private isRx(index: number): boolean {
    return index === 0 || (index >= 4 && index % 2 === 0);
  }

  private portOfTx(index: number): ConsolePort | undefined {
    return index === 1 ? this.ports[0] : this.ports[(index - 3) / 2];
  }

  /**
   * Forwards the port's transmit chains to the host side while it has room. A chain is completed (used)
   * once all of it went to the host, or was dropped: with no host connected (a serial line nobody
   * listens on), or on the console port once its host side is full. The console port is never held
   * back because Linux's hvc driver spins for the used buffer with interrupts off (put_chars): holding
   * it would stall the guest kernel, not one writer. QEMU drops console-port bytes for the same reason.
   */
  private dataIn(port: ConsolePort): void {
    const q = this.ctx?.queues[this.txQueue(port.id)];
    if (!this.ctx || !q) return;
    let bytes = 0;
    let chains = 0;
    for (;;) {
      if (bytes >= PASS_BYTES || chains >= PASS_CHAINS) {
        this.later(port.id, () => this.dataIn(port));
        break;
      }
      const room = port.hostConnected ? port.hostRoom() : Infinity;
      const drop = !port.hostConnected || (room <= 0 && port.isConsole);
      let cur = this.txCursor[port.id];
      if (!cur) {
        if (room <= 0 && !drop) break;
        const chain = q.pop();
        if (!chain) break;
        chains++;
        cur = { chain, seg: 0, off: 0, done: 0 };
        this.txCursor[port.id] = cur;
      }
      const left = cur.chain.readableBytes - cur.done;
      if (drop) {
        port.countTx(left, false);
        cur.done += left;
      } else if (left > 0) {
        if (room <= 0) break;
        const piece = take(cur, Math.min(left, room, MAX_TX_COPY));
        bytes += piece.length;
        port.countTx(piece.length, true);
        port.emit('data', piece);
        // A listener may have reset the device (or failed it) from inside 'data'.
        if (this.txCursor[port.id] !== cur) break;
      }
      if (cur.done === cur.chain.readableBytes) {
        this.txCursor[port.id] = undefined;
        q.pushUsed(cur.chain, 0);
        port.countTxChain();
      }
    }
    this.finish(q);
  }

  private controlIn(): void {
    const q = this.ctx?.queues[3];
    if (!this.ctx || !q) return;
    let chains = 0;
    for (let chain = q.pop(); chain; chain = q.pop()) {
      // Linux's control messages are 8 bytes; only those are copied, whatever the chain's length.
      const len = chain.readableBytes;
      const msg = len >= CTRL_MSG_SIZE && len <= MAX_CTRL_IN ? take({ chain, seg: 0, off: 0, done: 0 }, CTRL_MSG_SIZE) : undefined;
      q.pushUsed(chain, 0);
      if (!msg) this.logger?.debug({ len }, 'virtio-console: malformed control message ignored');
      else this.handleControl(msg.readUInt32LE(0), msg.readUInt16LE(4), msg.readUInt16LE(6));
      if (++chains >= PASS_CHAINS) {
        this.later('ctrl', () => this.controlIn());
        break;
      }
    }
    this.finish(q);
    this.flush();
  }

  /** Runs `fn` on a later turn of the event loop, once per key, if the device was not reset meanwhile. */
  private later(key: number | 'ctrl', fn: () => void): void {
    if (this.scheduled.has(key)) return;
    this.scheduled.add(key);
    const ctx = this.ctx;
    setImmediate(() => {
      this.scheduled.delete(key);
      if (this.ctx && this.ctx === ctx) fn();
    });
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
    if (!this.ctx) return;
    // A host that went takes nothing: what the guest holds in flight or waiting is dropped now.
    this.dataIn(p);
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
    if (this.ctrlOut.length < MAX_CTRL_OUT) this.ctrlOut.push(msg);
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
    if (q.error) {
      // The transport stops the device (DEVICE_NEEDS_RESET); nothing here may touch its queues until the
      // driver resets it, not even host data or a 'drain' arriving later.
      const ctx = this.ctx;
      this.ctx = undefined;
      this.txCursor = [];
      ctx.fail(q.error.message);
    } else if (q.needsInterrupt()) this.ctx.signalUsed();
  }
}

/** A transmit chain part of which has been forwarded: `done` bytes, up to segment `seg`, offset `off`. */
interface TxCursor {
  chain: DescriptorChain;
  seg: number;
  off: number;
  done: number;
}

/** Copies the next `n` bytes of the chain's readable buffers out of guest RAM; `n` must not exceed what is left. */
function take(cur: TxCursor, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let at = 0;
  while (at < n) {
    const seg = cur.chain.readable[cur.seg];
    if (!seg) break;
    const k = seg.copy(out, at, cur.off, Math.min(seg.length, cur.off + n - at));
    at += k;
    cur.off += k;
    cur.done += k;
    if (cur.off >= seg.length) {
      cur.seg++;
      cur.off = 0;
    }
  }
  return at === n ? out : out.subarray(0, at);
}
