import net from 'node:net';
import { VrunError } from '../../common/errors.js';

/**
 * A QMP (QEMU Machine Protocol) client over a unix socket: JSON objects, one per line. QEMU is a
 * process we started, but its replies are still bounded (line length) and checked for shape.
 */
type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
interface Pending {
  resolve: (v: Json) => void;
  reject: (e: Error) => void;
}

const MAX_LINE = 1 << 20;

export class QmpClient {
  private buf = '';
  private readonly pending: Pending[] = [];
  private readonly eventHandlers = new Set<(event: string, data: Json) => void>();
  private closed = false;

  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('close', () => this.onClose());
    sock.on('error', () => this.onClose());
  }

  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(path);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        const client = new QmpClient(sock);
        await client.greeting();
        await client.execute('qmp_capabilities');
        return client;
      } catch (err) {
        if (Date.now() > deadline) throw new VrunError(`cannot connect to QEMU's QMP socket ${path}: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private greeting(): Promise<Json> {
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
  }

  onEvent(fn: (event: string, data: Json) => void): void {
    this.eventHandlers.add(fn);
  }

  execute(command: string, args?: Record<string, Json>): Promise<Json> {
    if (this.closed) return Promise.reject(new VrunError(`QMP ${command}: connection to QEMU closed`));
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.sock.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    });
  }

  close(): void {
    this.sock.destroy();
  }

  private onData(d: string): void {
    this.buf += d;
    if (this.buf.length > MAX_LINE && !this.buf.includes('\n')) {
      this.sock.destroy(new Error('QMP line too long'));
      return;
    }
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!line) continue;
      let msg: Json;
      try {
        msg = JSON.parse(line) as Json;
      } catch {
        continue;
      }
      if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) continue;
      if (typeof msg.event === 'string') {
        for (const h of this.eventHandlers) h(msg.event, msg.data ?? null);
        continue;
      }
      const p = this.pending.shift();
      if (!p) continue;
      if ('error' in msg) {
        const e = msg.error as { desc?: string };
        p.reject(new VrunError(`QEMU: ${typeof e === 'object' && e && typeof e.desc === 'string' ? e.desc : 'error'}`));
      } else p.resolve((msg.return ?? msg.QMP ?? null) as Json);
    }
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.splice(0)) p.reject(new VrunError('QMP connection to QEMU closed'));
  }
}
