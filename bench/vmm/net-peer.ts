import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { pathToFileURL } from 'node:url';

/**
 * The far end of the pod's veth in the network lab (bench/vmm/net-lab.ts), run inside the peer network
 * namespace (nsenter --net=...). The guest connects out for both transfers, so nothing races the guest's
 * listeners: on RECV_PORT it sends `bytes` (guest -> peer), on SEND_PORT it receives them (peer -> guest).
 * Each transfer is hashed here and timed here, and reported as one `VRUN-PEER {...}` line.
 */

export const RECV_PORT = 5001;
export const SEND_PORT = 5002;
/** Bytes per write: large enough that node's per-write cost disappears next to the network's. */
const CHUNK = 256 * 1024;
/**
 * The data sent is cut from a random pool at a moving offset, so the stream is not periodic (a dropped or
 * duplicated segment changes the hash) while generating it costs nothing next to sending it.
 */
const POOL = 8 * 1024 * 1024;

export interface PeerReport {
  dir: 'guest-to-peer' | 'peer-to-guest';
  bytes: number;
  sha256: string;
  /** First byte to the end (receive), or accept to the guest's close (send): the transfer, not its setup. */
  ms: number;
  error?: string;
}

function report(r: PeerReport): void {
  process.stdout.write(`VRUN-PEER ${JSON.stringify(r)}\n`);
}

function receive(sock: net.Socket): void {
  const hash = createHash('sha256');
  let bytes = 0;
  let first = 0n;
  sock.on('data', (d: Buffer) => {
    if (bytes === 0) first = process.hrtime.bigint();
    bytes += d.length;
    hash.update(d);
  });
  sock.on('end', () => {
    report({ dir: 'guest-to-peer', bytes, sha256: hash.digest('hex'), ms: Number(process.hrtime.bigint() - first) / 1e6 });
    sock.end();
  });
  sock.on('error', (e) => report({ dir: 'guest-to-peer', bytes, sha256: '', ms: 0, error: e.message }));
}

function send(sock: net.Socket, total: number, pool: Buffer): void {
  const hash = createHash('sha256');
  const started = process.hrtime.bigint();
  let sent = 0;
  let n = 0;
  let failed = false;
  // The guest half-closes at once (its nc's stdin is /dev/null); keep writing until all is sent.
  sock.on('end', () => undefined);
  sock.on('error', (e) => {
    failed = true;
    report({ dir: 'peer-to-guest', bytes: sent, sha256: '', ms: 0, error: e.message });
  });
  sock.on('close', () => {
    if (!failed) report({ dir: 'peer-to-guest', bytes: sent, sha256: hash.digest('hex'), ms: Number(process.hrtime.bigint() - started) / 1e6 });
  });
  const pump = (): void => {
    while (sent < total) {
      const len = Math.min(CHUNK, total - sent);
      const at = (n++ * 7919 * 64) % (POOL - len);
      const chunk = pool.subarray(at, at + len);
      hash.update(chunk);
      sent += len;
      if (!sock.write(chunk)) return void sock.once('drain', pump);
    }
    sock.end();
  };
  pump();
}

/** Serves one transfer each way, then exits; `timeoutMs` bounds the whole. */
export function servePeer(host: string, total: number, timeoutMs: number): void {
  const pool = randomBytes(POOL);
  let left = 2;
  const done = () => {
    if (--left === 0) process.exit(0);
  };
  const recv = net.createServer({ allowHalfOpen: true }, (s) => {
    recv.close();
    receive(s);
    s.on('close', done);
  });
  const snd = net.createServer({ allowHalfOpen: true }, (s) => {
    snd.close();
    send(s, total, pool);
    s.on('close', done);
  });
  let listening = 0;
  const ready = () => {
    if (++listening === 2) process.stdout.write('VRUN-PEER-LISTENING\n');
  };
  recv.listen(RECV_PORT, host, ready);
  snd.listen(SEND_PORT, host, ready);
  setTimeout(() => {
    process.stderr.write(`net-peer: gave up after ${timeoutMs} ms\n`);
    process.exit(2);
  }, timeoutMs).unref();
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // net-peer.js HOST BYTES TIMEOUT_MS
  const [host, bytes, timeout] = process.argv.slice(2);
  servePeer(host ?? '0.0.0.0', Number(bytes), Number(timeout ?? 600_000));
}
