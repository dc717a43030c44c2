/**
 * A minimal client of the CRI streaming server's port-forward, in its websocket flavour (`v4.channel.k8s.io`,
 * which containerd 1.6 serves beside SPDY): for the first forwarded port, channel 0 carries data and channel 1
 * errors, each message starts with its channel byte, and the server's first message on each channel is the
 * port number (uint16, little-endian).
 */
import type net from 'node:net';
import WebSocket from 'ws';

export interface Forwarded {
  /** What came back on the data channel, after the port prefix. */
  data: Buffer;
  /** What came on the error channel, after the port prefix. */
  error: string;
  /** The port each channel announced. */
  ports: number[];
}

/** Sends `request` through the port-forward at `url` and collects the answer until the server closes. */
export function forwardOnce(url: string, request: Buffer, connect: (host: string, port: number) => net.Socket, timeoutMs = 120_000): Promise<Forwarded> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url.replace(/^http/, 'ws'), ['v4.channel.k8s.io'], { createConnection: () => connect(target.hostname, Number(target.port)) });
    const data: Buffer[] = [];
    const error: Buffer[] = [];
    const ports: number[] = [];
    const seenPrefix = [false, false];
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`port-forward did not end within ${timeoutMs} ms; data so far: ${JSON.stringify(Buffer.concat(data).toString().slice(0, 500))}`));
    }, timeoutMs);
    ws.on('open', () => ws.send(Buffer.concat([Buffer.from([0]), request])));
    ws.on('message', (msg: Buffer) => {
      const channel = msg[0];
      if (channel !== 0 && channel !== 1) return;
      let body = msg.subarray(1);
      if (!seenPrefix[channel]) {
        seenPrefix[channel] = true;
        ports.push(body.readUInt16LE(0));
        body = body.subarray(2);
      }
      (channel === 0 ? data : error).push(body);
    });
    ws.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(data), error: Buffer.concat(error).toString(), ports });
    });
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}
