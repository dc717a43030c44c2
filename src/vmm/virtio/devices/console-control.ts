import type { Logger } from '../../../common/log.js';
import type { Virtqueue } from '../queue.js';
import type { ConsolePort } from './console-port.js';
import { copyOut, txCursor } from './tx-cursor.js';

/**
 * The VIRTIO_CONSOLE_F_MULTIPORT control protocol (virtio 1.2, "Multiport Device Operation"): the
 * messages the guest driver sends on the control transmit queue (DEVICE_READY, PORT_READY, PORT_OPEN)
 * and the ones the device answers with on the control receive queue (DEVICE_ADD, CONSOLE_PORT,
 * PORT_NAME, PORT_OPEN), which is how the guest learns each port's name and the host side's
 * connection state.
 */

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

const CTRL_MSG_SIZE = 8;
/** Control messages from the guest that are larger than this are not control messages. */
const MAX_CTRL_IN = 4096;
/**
 * Control messages waiting for the guest to post control buffers. A driver needs about four per port
 * (DEVICE_ADD, CONSOLE_PORT, PORT_NAME, PORT_OPEN) and posts a full queue of buffers, so this is only
 * reached by a guest that asks again and again (DEVICE_READY) and never reads: at most ~80 bytes each.
 */
const MAX_CTRL_OUT = 1024;

export class ConsoleControl {
  private outbox: Buffer[] = [];

  constructor(
    private readonly ports: readonly ConsolePort[],
    private readonly logger?: Logger,
  ) {}

  /** Messages waiting for control receive buffers. */
  get waiting(): number {
    return this.outbox.length;
  }

  reset(): void {
    this.outbox = [];
  }

  /**
   * Takes the guest's control messages from the control transmit queue, at most `maxChains` of them;
   * returns true if it stopped there (more may be waiting).
   */
  receive(q: Virtqueue, maxChains: number): boolean {
    let chains = 0;
    for (let chain = q.pop(); chain; chain = q.pop()) {
      // Linux's control messages are 8 bytes; only those are copied, whatever the chain's length.
      const len = chain.readableBytes;
      const msg = len >= CTRL_MSG_SIZE && len <= MAX_CTRL_IN ? copyOut(txCursor(chain), CTRL_MSG_SIZE) : undefined;
      q.pushUsed(chain, 0);
      if (!msg) this.logger?.debug({ len }, 'virtio-console: malformed control message ignored');
      else this.handle(msg.readUInt32LE(0), msg.readUInt16LE(4), msg.readUInt16LE(6));
      if (++chains >= maxChains) return true;
    }
    return false;
  }

  /** Moves waiting messages into the control receive queue's buffers. */
  deliver(q: Virtqueue): void {
    while (this.outbox.length > 0) {
      const chain = q.pop();
      if (!chain) break;
      const msg = this.outbox.shift()!;
      // A control message must fit one buffer; the driver posts page-sized ones.
      const dst = chain.writable[0];
      const n = dst && dst.length >= msg.length ? msg.copy(dst) : 0;
      q.pushUsed(chain, n);
    }
  }

  /**
   * Queues the host side's new connection state for the guest; false if the guest has no such port yet
   * (before PORT_READY), in which case PORT_READY announces the state then.
   */
  announceHost(p: ConsolePort): boolean {
    if (!p.guestReady) return false;
    this.send(p.id, CTRL.PORT_OPEN, p.hostConnected ? 1 : 0);
    return true;
  }

  private handle(id: number, event: number, value: number): void {
    switch (event) {
      case CTRL.DEVICE_READY:
        if (value !== 1) return;
        for (const p of this.ports) this.send(p.id, CTRL.DEVICE_ADD, 0);
        return;
      case CTRL.PORT_READY: {
        const p = this.ports[id];
        if (!p || value !== 1) return;
        p.guestReady = true;
        if (p.isConsole) this.send(p.id, CTRL.CONSOLE_PORT, 1);
        this.send(p.id, CTRL.PORT_NAME, 0, Buffer.from(`${p.name}\0`));
        // A new port is host-disconnected in the guest (reads see EOF): only a connected host says so.
        if (p.hostConnected) this.send(p.id, CTRL.PORT_OPEN, 1);
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

  private send(id: number, event: number, value: number, extra?: Buffer): void {
    const msg = Buffer.alloc(CTRL_MSG_SIZE + (extra?.length ?? 0));
    msg.writeUInt32LE(id, 0);
    msg.writeUInt16LE(event, 4);
    msg.writeUInt16LE(value, 6);
    extra?.copy(msg, CTRL_MSG_SIZE);
    // Bounded: a guest that never posts control buffers cannot make the host queue grow forever.
    if (this.outbox.length < MAX_CTRL_OUT) this.outbox.push(msg);
  }
}
