/**
 * Joins the guest's `vrun.agent` virtio-console port to the agent's local gRPC socket. Node cannot wrap a
 * character device in a net.Socket, so bytes are pumped with fs reads/writes on the device and a plain
 * unix-socket connection to the server. A host that closes and reconnects quickly may never show the
 * guest an EOF, so a read that starts with the HTTP/2 client preface also begins a new session (a new
 * gRPC connection always starts with it). The device is non-blocking and waited on with a bounded poll: a
 * read parked in libuv's pool would block the agent's exit (libuv joins its pool threads at exit). Each host connection gets its own local connection: the port reads
 * EOF while the host side is closed, which ends the current HTTP/2 session; the next bytes from a new
 * host connection open a fresh one.
 */
import { constants } from 'node:fs';
import { open, readdir, readFile, type FileHandle } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { VrunError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { agentNative } from './native-ops.js';

const SYS_PORTS = '/sys/class/virtio-ports';
const READ_BYTES = 64 * 1024;
/** How often to look again while no host is connected (reads return EOF at once then). */
const IDLE_POLL_MS = 50;
const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** Longest wait for port data in one pool job (bounds how long an exit can take). */
const POLL_MS = 250;

/** /dev/vportNpM of the port QEMU (or the native VMM) named `name`; waits for udev-less devtmpfs. */
export async function findPortDevice(name: string, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const entries = await readdir(SYS_PORTS).catch(() => [] as string[]);
    for (const e of entries) {
      const n = await readFile(path.join(SYS_PORTS, e, 'name'), 'utf8').catch(() => '');
      if (n.trim() === name) return path.join('/dev', e);
    }
    if (Date.now() > deadline) throw new VrunError(`no virtio-console port named ${name} (looked in ${SYS_PORTS}: ${entries.join(', ') || 'none'})`);
    await sleep(100);
  }
}

export class PortBridge {
  private device: FileHandle | null = null;
  private conn: net.Socket | null = null;
  private writes: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly devicePath: string,
    private readonly socketPath: string,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.device = await open(this.devicePath, constants.O_RDWR | constants.O_NONBLOCK);
    void this.pump().catch((err: unknown) => {
      this.log.error({ err }, 'agent port bridge failed');
      process.exitCode = 1;
      process.kill(process.pid, 'SIGTERM');
    });
  }

  /** Stops reading; what the server already wrote goes out to the host first (up to `timeoutMs`). */
  async stop(timeoutMs = 2000): Promise<void> {
    this.stopped = true;
    const conn = this.conn;
    if (conn && !conn.destroyed) {
      await Promise.race([new Promise((r) => conn.once('close', r)), new Promise((r) => setTimeout(r, timeoutMs))]);
    }
    await Promise.race([this.writes, new Promise((r) => setTimeout(r, timeoutMs))]);
    conn?.destroy();
  }

  private async pump(): Promise<void> {
    const dev = this.device as FileHandle;
    const native = agentNative();
    for (;;) {
      if (this.stopped) return;
      const ready = await native.fdWaitReadable(dev.fd, POLL_MS);
      if (ready === 'timeout') continue;
      const buf = Buffer.allocUnsafe(READ_BYTES);
      let bytesRead: number;
      try {
        ({ bytesRead } = await dev.read(buf, 0, READ_BYTES, null));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
        throw err;
      }
      if (bytesRead === 0) {
        if (this.conn) {
          this.log.info('host closed the agent port; ending its session');
          this.conn.destroy();
          this.conn = null;
        }
        await sleep(IDLE_POLL_MS);
        continue;
      }
      const data = buf.subarray(0, bytesRead);
      if (this.conn && data.subarray(0, HTTP2_PREFACE.length).equals(HTTP2_PREFACE)) {
        this.log.info('a new host connection began without an EOF between; ending the old session');
        this.conn.destroy();
        this.conn = null;
      }
      const conn = this.conn ?? this.connect();
      if (!conn.write(data)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            conn.removeListener('drain', done);
            conn.removeListener('close', done);
            resolve();
          };
          conn.once('drain', done);
          conn.once('close', done);
        });
      }
    }
  }

  private connect(): net.Socket {
    const conn = net.connect(this.socketPath);
    this.conn = conn;
    this.log.info('host opened the agent port; new session');
    const dev = this.device as FileHandle;
    conn.on('data', (chunk: Buffer) => {
      conn.pause();
      this.writes = this.writes
        .then(async () => {
          // A session that ended (host EOF, or a new host preface) must not leak queued bytes into the
          // next one: the host would read them as garbage in its fresh HTTP/2 connection.
          if (this.conn !== conn || conn.destroyed) return;
          let off = 0;
          while (off < chunk.length) {
            try {
              off += (await dev.write(chunk, off, chunk.length - off, null)).bytesWritten;
            } catch (err) {
              // The port's queue to the host is full, or the host is gone (writes block until a host
              // connects): wait, unless the session ended meanwhile, so its rest never reaches the next host.
              if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
              await sleep(1);
              if (this.conn !== conn || conn.destroyed) return;
            }
          }
        })
        .then(
          () => {
            conn.resume();
          },
          (err: unknown) => {
            this.log.warn({ err }, 'writing to the agent port failed; ending the session');
            conn.destroy();
          },
        );
    });
    conn.on('error', (err) => this.log.warn({ err }, 'local agent connection failed'));
    conn.on('close', () => {
      if (this.conn === conn) this.conn = null;
    });
    return conn;
  }
}
