import net from 'node:net';
import { rmSync } from 'node:fs';
import type { Logger } from '../../../common/log.js';
import type { ConsolePort } from './console-port.js';

/** Connections that may wait for the current client to go (a reconnecting client opens its new one early). */
const MAX_WAITING = 4;
/** What a waiting client may send before it is read no further (a gRPC client sends ~100 bytes and waits). */
const MAX_HELD_BYTES = 64 * 1024;
/**
 * How long the host side stays disconnected after a client leaves before the next one is taken. The
 * guest's reader sees EOF only if it runs while host_connected is 0; PORT_OPEN 0 and 1 handled in one
 * batch would hide the end of the session (the bridge then falls back to spotting the HTTP/2 preface).
 */
const HANDOVER_MS = 100;

interface Waiting {
  socket: net.Socket;
  held: Buffer[];
  /** Removes the listeners it has while waiting. */
  stopWaiting: () => void;
}

/**
 * A console port surfaced on the host as a unix socket: one client at a time; its bytes go to the
 * guest and the guest's bytes go to it, with backpressure both ways. Towards the guest, the socket is
 * read only while the guest has taken everything read so far (one read, at most 64 KiB, waits in the
 * port), so what the guest has not posted buffers for stays in the kernel's socket buffer and the
 * client's writes block. From the guest, the device stops taking the port's transmit chains while the
 * socket's write buffer holds HOST_TX_CAP (console-port.ts) and starts again on 'drain', so a client that
 * does not read blocks the guest's writer instead of growing this process. Bytes the guest sends while
 * no client is connected are dropped, like a serial line with nobody listening.
 *
 * Like QEMU's chardev socket server, a client that connects while another is attached is not refused:
 * it waits (a few at most) and is taken once the current one is gone. The guest sees each client as a
 * host connection (PORT_OPEN 1 on attach, 0 when it goes), which is how the agent's bridge knows to
 * end one HTTP/2 session and start the next (after a short handover, so the guest can see the gap).
 * Until the first client comes the port counts as connected (QEMU's starts disconnected): a guest that
 * opens the port and reads before the host attaches (the machine check's `head -c 5`) then waits for
 * bytes instead of reading EOF; the agent works either way.
 */
export class PortSocket {
  private readonly server: net.Server;
  private client: net.Socket | undefined;
  private readonly waiting: Waiting[] = [];
  private closed = false;
  private handover: NodeJS.Timeout | undefined;

  private constructor(
    readonly path: string,
    private readonly port: ConsolePort,
    private readonly logger?: Logger,
  ) {
    this.server = net.createServer((s) => this.accept(s));
    port.setHostBuffer(() => this.client?.writableLength ?? 0);
    port.on('data', (d) => this.client?.write(d));
    port.on('flushed', () => this.client?.resume());
  }

  static async listen(path: string, port: ConsolePort, logger?: Logger): Promise<PortSocket> {
    rmSync(path, { force: true });
    const ps = new PortSocket(path, port, logger);
    await new Promise<void>((resolve, reject) => {
      ps.server.once('error', reject);
      ps.server.listen(path, () => {
        ps.server.off('error', reject);
        resolve();
      });
    });
    return ps;
  }

  /** Clients waiting for the current one to go. */
  get waitingClients(): number {
    return this.waiting.length;
  }

  /** Whether the attached client's bytes are being read (false while the guest has not taken the last read). */
  get clientReading(): boolean {
    return this.client !== undefined && !this.client.isPaused();
  }

  private accept(s: net.Socket): void {
    if (this.closed) {
      s.destroy();
      return;
    }
    if (!this.client && !this.handover) {
      this.attach(s, []);
      return;
    }
    if (this.waiting.length >= MAX_WAITING) {
      this.logger?.debug({ port: this.port.name, waiting: this.waiting.length }, 'console socket: too many clients waiting; refusing one');
      s.destroy();
      return;
    }
    // Its bytes are held (not left unread) so that a client that gives up while waiting is seen to go.
    const held: Buffer[] = [];
    let heldBytes = 0;
    const onData = (d: Buffer) => {
      held.push(d);
      heldBytes += d.length;
      if (heldBytes >= MAX_HELD_BYTES) s.pause();
    };
    const onError = (err: Error) => this.logger?.debug({ port: this.port.name, err }, 'console socket: waiting client failed');
    const onClose = () => {
      const i = this.waiting.indexOf(w);
      if (i >= 0) this.waiting.splice(i, 1);
    };
    const w: Waiting = {
      socket: s,
      held,
      stopWaiting: () => {
        s.off('data', onData);
        s.off('error', onError);
        s.off('close', onClose);
      },
    };
    this.waiting.push(w);
    s.on('data', onData);
    s.on('error', onError);
    s.on('close', onClose);
  }

  private attach(s: net.Socket, held: Buffer[]): void {
    this.client = s;
    this.port.setHostConnected(true);
    for (const d of held) this.port.write(d);
    s.on('data', (d: Buffer) => {
      this.port.write(d);
      if (this.port.pendingBytes > 0) s.pause();
    });
    s.on('drain', () => {
      if (this.client === s) this.port.hostDrained();
    });
    s.on('error', (err) => this.logger?.debug({ port: this.port.name, err }, 'console socket client failed'));
    s.on('close', () => {
      if (this.client !== s) return;
      this.client = undefined;
      this.port.setHostConnected(false);
      this.handover = setTimeout(() => {
        this.handover = undefined;
        this.takeNext();
      }, HANDOVER_MS);
    });
    if (this.port.pendingBytes > 0) s.pause();
    else s.resume();
  }

  private takeNext(): void {
    if (this.closed) return;
    for (let w = this.waiting.shift(); w; w = this.waiting.shift()) {
      if (w.socket.destroyed) continue;
      w.stopWaiting();
      this.attach(w.socket, w.held);
      return;
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.handover);
    for (const w of this.waiting.splice(0)) w.socket.destroy();
    this.client?.destroy();
    this.server.close();
    rmSync(this.path, { force: true });
  }
}
