import http from 'node:http';
import net from 'node:net';
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawGet } from '../../src/image/raw-http-get.js';

/** The blob reader against a real node:http server: chunked and sized bodies, cut connections, hostile headers. */
describe('raw HTTP GET (blob bodies from plain-HTTP registries)', () => {
  const data = crypto.randomBytes(3 << 20);
  let server: http.Server;
  let base: string;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/chunked') {
        // odd-sized writes without a Content-Length: node frames them as chunks
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        let off = 0;
        const step = () => {
          while (off < data.length) {
            const n = Math.min(7919 + (off % 5000), data.length - off);
            const more = res.write(data.subarray(off, off + n));
            off += n;
            if (!more) return void res.once('drain', step);
          }
          res.end();
        };
        step();
      } else if (req.url === '/sized') {
        res.writeHead(206, { 'content-length': String(data.length), 'x-echo-range': req.headers.range ?? '' });
        res.end(data);
      } else if (req.url === '/cut') {
        res.writeHead(200, { 'content-length': String(data.length) });
        res.write(data.subarray(0, 1 << 20), () => res.socket?.destroy());
      } else {
        res.writeHead(404, { 'content-length': '9' });
        res.end('not found');
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  async function read(path: string, headers: Record<string, string> = {}) {
    const res = await rawGet(new URL(`${base}${path}`), headers, 10_000);
    const chunks: Buffer[] = [];
    await res.body((c) => chunks.push(Buffer.from(c)));
    return { res, body: Buffer.concat(chunks) };
  }

  it('reads a chunked body exactly', async () => {
    const { res, body } = await read('/chunked');
    expect(res.status).toBe(200);
    expect(body.equals(data)).toBe(true);
  });

  it('reads a sized body exactly and sends the request headers', async () => {
    const { res, body } = await read('/sized', { range: 'bytes=5-' });
    expect([res.status, res.header('X-Echo-Range')]).toEqual([206, 'bytes=5-']);
    expect(body.equals(data)).toBe(true);
  });

  it('fails when the connection ends before the declared length', async () => {
    await expect(read('/cut')).rejects.toThrow(/connection closed before the end of the body/);
  });

  it('returns other statuses for the caller to handle, and refuses header values with line breaks', async () => {
    const res = await rawGet(new URL(`${base}/nothing`), {}, 10_000);
    expect(res.status).toBe(404);
    res.discard();
    await expect(rawGet(new URL(`${base}/sized`), { authorization: 'Bearer x\r\nX-Injected: 1' }, 10_000)).rejects.toThrow(/line break \(refused\)/);
  });
});
