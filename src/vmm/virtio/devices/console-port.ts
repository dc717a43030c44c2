import { EventEmitter } from 'node:events';
import type { Virtqueue } from '../queue.js';
import { copyOut, txCursor, type TxCursor } from './tx-cursor.js';

/**
 * One virtio-console port's data path, between its receive/transmit queues and whatever uses it on the host.
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

const HIGH_WATER = 1024 * 1024;

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

/** How a port reaches the device it belongs to. */
export interface PortHooks {
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
  /** The transmit chain being forwarded piece by piece. */
  private txInFlight: TxCursor | undefined;
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

  debugState(): Record<string, unknown> {
    return {
      name: this.name,
      guestReady: this.guestReady,
      guestOpen: this.guestOpen,
      hostConnected: this.connected,
      backlogBytes: this.backlogBytes,
      blocked: this.blocked,
      ...this.stats,
      txChainInFlight: this.txInFlight !== undefined,
    };
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

  /**
   * Forwards the transmit chains in `tx` to the host side while it has room. A chain is completed (used)
   * once all of it went to the host, or was dropped: with no host connected (a serial line nobody
   * listens on), or on the console port once its host side is full. The console port is never held
   * back because Linux's hvc driver spins for the used buffer with interrupts off (put_chars): holding
   * it would stall the guest kernel, not one writer. QEMU drops console-port bytes for the same reason.
   *
   * Returns true if it stopped at the budget (`maxBytes` forwarded or `maxChains` taken) rather than for
   * want of chains or room: the device then goes on in a later turn.
   */
  forwardTx(tx: Virtqueue, maxBytes: number, maxChains: number): boolean {
    let bytes = 0;
    let chains = 0;
    for (;;) {
      if (bytes >= maxBytes || chains >= maxChains) return true;
      const room = this.connected ? this.hostRoom() : Infinity;
      const drop = !this.connected || (room <= 0 && this.isConsole);
      let cur = this.txInFlight;
      if (!cur) {
        if (room <= 0 && !drop) return false;
        const chain = tx.pop();
        if (!chain) return false;
        chains++;
        cur = txCursor(chain);
        this.txInFlight = cur;
      }
      const left = cur.chain.readableBytes - cur.done;
      if (drop) {
        this.counters.txDropped += left;
        cur.done += left;
      } else if (left > 0) {
        if (room <= 0) return false;
        const piece = copyOut(cur, Math.min(left, room, MAX_TX_COPY));
        bytes += piece.length;
        this.counters.txForwarded += piece.length;
        this.counters.txLargestCopy = Math.max(this.counters.txLargestCopy, piece.length);
        this.emit('data', piece);
        // A listener may have reset the device (or failed it) from inside 'data'.
        if (this.txInFlight !== cur) return false;
      }
      if (cur.done === cur.chain.readableBytes) {
        this.txInFlight = undefined;
        tx.pushUsed(cur.chain, 0);
        this.counters.txChains++;
      }
    }
  }

  /** The device stopped using its queues: the chain in flight belongs to a ring that is gone. */
  abandonTx(): void {
    this.txInFlight = undefined;
  }

  reset(): void {
    this.txInFlight = undefined;
    this.backlog = [];
    this.backlogBytes = 0;
    this.guestReady = false;
    if (this.guestOpen) {
      this.guestOpen = false;
      this.emit('close');
    }
  }
}
