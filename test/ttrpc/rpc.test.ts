import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TtrpcClient } from '../../src/ttrpc/client.js';
import { FrameReader, FrameType, encodeFrame, type FrameEvent } from '../../src/ttrpc/frame.js';
import { Request, Response } from '../../src/ttrpc/messages.js';
import { TtrpcServer, type CallContext } from '../../src/ttrpc/server.js';
import { Code, TtrpcError } from '../../src/ttrpc/status.js';

const enc = (s: string): Uint8Array => Buffer.from(s);
const dec = (b: Uint8Array): string => Buffer.from(b).toString();

/** A raw peer: writes bytes as they are and collects whatever frames come back. */
class RawPeer {
  readonly events: FrameEvent[] = [];
  private readonly reader = new FrameReader();
  closed = false;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.events.push(...this.reader.push(c));
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(p: string): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection({ path: p }, () => resolve(new RawPeer(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  async until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  async response(streamId: number): Promise<Response> {
    await this.until(() => this.events.some((e) => e.header.streamId === streamId), `a response on stream ${streamId}`);
    const ev = this.events.find((e) => e.header.streamId === streamId)!;
    if (ev.kind !== 'frame') throw new Error('oversized response');
    expect(ev.header.type).toBe(FrameType.Response);
    return Response.decode(ev.data);
  }
}

function requestFrame(streamId: number, service: string, method: string, payload: string): Buffer {
  return encodeFrame(streamId, FrameType.Request, 0, Request.encode({ service, method, payload: enc(payload) }));
}

describe('ttrpc client and server over a unix socket', () => {
  let dir: string;
  let sock: string;
  let server: TtrpcServer;
  let client: TtrpcClient;
  const deadlines: (number | undefined)[] = [];
  const abortReasons: unknown[] = [];
  const barrierWaiting: (() => void)[] = [];
  let inFlight = 0;
  let maxInFlight = 0;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-ttrpc-'));
    sock = path.join(dir, 'ttrpc.sock');
    server = new TtrpcServer({ maxConcurrentRequests: 3 });
    server.register('test.Echo', {
      Echo: (payload) => payload,
      Upper: async (payload) => enc(dec(payload).toUpperCase()),
      Fail: (payload) => {
        throw new TtrpcError(Code.NOT_FOUND, `no such thing: ${dec(payload)}`);
      },
      Crash: () => {
        throw new Error('handler blew up');
      },
      Meta: (_p, ctx: CallContext) => enc(JSON.stringify(Object.fromEntries(ctx.metadata))),
      // Completes only once `payload` calls are waiting at the same time: proves requests run concurrently.
      Barrier: async (payload) => {
        const n = Number(dec(payload));
        await new Promise<void>((resolve) => {
          barrierWaiting.push(resolve);
          if (barrierWaiting.length >= n) {
            for (const r of barrierWaiting.splice(0)) r();
          }
        });
        return payload;
      },
      Sleep: async (payload, ctx) => {
        deadlines.push(ctx.deadline);
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, Number(dec(payload)));
            ctx.signal.addEventListener('abort', () => {
              abortReasons.push(ctx.signal.reason);
              clearTimeout(t);
              resolve();
            });
          });
        } finally {
          inFlight--;
        }
        return payload;
      },
      Huge: () => new Uint8Array(5 << 20),
    });
    await server.listen(`unix://${sock}`);
    client = await TtrpcClient.connect(sock);
  });

  afterAll(async () => {
    client.close();
    await server.close();
    expect(fs.existsSync(sock)).toBe(false);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers unary calls with their payload', async () => {
    expect(dec(await client.call('test.Echo', 'Echo', enc('hello')))).toBe('hello');
    expect(dec(await client.call('test.Echo', 'Upper', enc('hello')))).toBe('HELLO');
    expect(dec(await client.call('test.Echo', 'Echo', new Uint8Array(0)))).toBe('');
  });

  it('carries errors as status codes with their messages', async () => {
    const err = await client.call('test.Echo', 'Fail', enc('widget')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TtrpcError);
    expect(err).toMatchObject({ code: Code.NOT_FOUND, message: 'no such thing: widget' });

    const crash = await client.call('test.Echo', 'Crash', enc('')).catch((e: unknown) => e);
    expect(crash).toMatchObject({ code: Code.UNKNOWN, message: 'handler blew up' });
  });

  it('answers unknown services and methods with UNIMPLEMENTED naming them', async () => {
    await expect(client.call('test.Nope', 'Echo', enc(''))).rejects.toMatchObject({ code: Code.UNIMPLEMENTED, message: expect.stringContaining('"test.Nope"') });
    await expect(client.call('test.Echo', 'Nope', enc(''))).rejects.toMatchObject({ code: Code.UNIMPLEMENTED, message: expect.stringMatching(/"Nope".*"test.Echo"/) });
  });

  it('passes metadata to handlers', async () => {
    const out = JSON.parse(dec(await client.call('test.Echo', 'Meta', enc(''), { metadata: { 'Containerd-Namespace-Ttrpc': 'k8s.io', multi: ['a', 'b'] } }))) as unknown;
    expect(out).toEqual({ 'containerd-namespace-ttrpc': ['k8s.io'], multi: ['a', 'b'] });
  });

  it('serves concurrent calls on one connection concurrently and matches answers to callers', async () => {
    const results = await Promise.all([client.call('test.Echo', 'Barrier', enc('3')), client.call('test.Echo', 'Barrier', enc('3')), client.call('test.Echo', 'Barrier', enc('3'))]);
    expect(results.map(dec)).toEqual(['3', '3', '3']);
    // Answers arrive out of order: the slow call was sent first.
    const order: string[] = [];
    await Promise.all(
      ['300', '10', '100'].map((ms) =>
        client.call('test.Echo', 'Sleep', enc(ms)).then((p) => {
          order.push(dec(p));
        }),
      ),
    );
    expect(order).toEqual(['10', '100', '300']);
  });

  it('bounds requests in flight per connection and still answers them all', async () => {
    maxInFlight = 0;
    const calls = Array.from({ length: 8 }, (_, i) => client.call('test.Echo', 'Sleep', enc(String(30 + i))));
    expect((await Promise.all(calls)).map(dec)).toEqual(Array.from({ length: 8 }, (_, i) => String(30 + i)));
    expect(maxInFlight).toBe(3);
  });

  it('times out on the client and tells the server the deadline, which aborts the handler', async () => {
    deadlines.length = 0;
    abortReasons.length = 0;
    const t0 = Date.now();
    const err = await client.call('test.Echo', 'Sleep', enc('5000'), { timeoutMs: 150 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(deadlines[0]).toBeGreaterThan(t0);
    expect(deadlines[0]).toBeLessThan(t0 + 1000);
    await new Promise((r) => setTimeout(r, 100));
    expect(abortReasons[0]).toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    // The connection keeps working after a timed-out call.
    expect(dec(await client.call('test.Echo', 'Echo', enc('after')))).toBe('after');
  });

  it('enforces the deadline on the server even for a client that waits forever', async () => {
    const peer = await RawPeer.connect(sock);
    const req = Request.encode({ service: 'test.Echo', method: 'Sleep', payload: enc('5000'), timeoutNano: 100_000_000 });
    const t0 = Date.now();
    peer.socket.write(encodeFrame(1, FrameType.Request, 0, req));
    const resp = await peer.response(1);
    expect(resp.status).toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    expect(Date.now() - t0).toBeLessThan(2000);
    peer.socket.destroy();
  });

  it('cancels a call through an AbortSignal', async () => {
    const ctl = new AbortController();
    const p = client.call('test.Echo', 'Sleep', enc('2000'), { signal: ctl.signal });
    setTimeout(() => ctl.abort(), 50);
    await expect(p).rejects.toMatchObject({ code: Code.CANCELLED });
  });

  it('refuses a response larger than 4 MiB with RESOURCE_EXHAUSTED instead of sending it', async () => {
    await expect(client.call('test.Echo', 'Huge', enc(''))).rejects.toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    expect(dec(await client.call('test.Echo', 'Echo', enc('still here')))).toBe('still here');
  });

  it('does not send a request larger than 4 MiB', async () => {
    await expect(client.call('test.Echo', 'Echo', new Uint8Array(5 << 20))).rejects.toMatchObject({ code: Code.RESOURCE_EXHAUSTED, message: expect.stringContaining('exceeds') });
  });

  it('answers an oversized frame written raw with RESOURCE_EXHAUSTED and keeps the connection', async () => {
    const peer = await RawPeer.connect(sock);
    const big = 4 * 1024 * 1024 + 1;
    const head = Buffer.alloc(10);
    head.writeUInt32BE(big, 0);
    head.writeUInt32BE(1, 4);
    head[8] = FrameType.Request;
    peer.socket.write(head);
    peer.socket.write(Buffer.alloc(big, 0x41));
    const resp = await peer.response(1);
    expect(resp.status).toMatchObject({ code: Code.RESOURCE_EXHAUSTED, message: expect.stringContaining(String(big)) });
    peer.socket.write(requestFrame(3, 'test.Echo', 'Echo', 'next'));
    expect(dec((await peer.response(3)).payload)).toBe('next');
    peer.socket.destroy();
  });

  it('answers malformed requests on their stream: garbage payload, even and reused stream ids, stream data', async () => {
    const peer = await RawPeer.connect(sock);
    peer.socket.write(encodeFrame(1, FrameType.Request, 0, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])));
    expect((await peer.response(1)).status).toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringContaining('unmarshal request') });
    peer.socket.write(requestFrame(4, 'test.Echo', 'Echo', 'x'));
    expect((await peer.response(4)).status).toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringContaining('odd') });
    peer.socket.write(requestFrame(1, 'test.Echo', 'Echo', 'x'));
    await peer.until(() => peer.events.filter((e) => e.header.streamId === 1).length === 2, 'second answer on stream 1');
    const reuse = peer.events.filter((e) => e.header.streamId === 1)[1]!;
    expect(reuse.kind === 'frame' && Response.decode(reuse.data).status?.message).toContain('re-used');
    peer.socket.write(encodeFrame(7, FrameType.Data, 0, Buffer.from('x')));
    expect((await peer.response(7)).status).toMatchObject({ code: Code.UNIMPLEMENTED });
    peer.socket.write(requestFrame(9, 'test.Echo', 'Echo', 'fine'));
    expect(dec((await peer.response(9)).payload)).toBe('fine');
    peer.socket.destroy();
  });

  it('closes a connection that sends frames a server never receives, and keeps serving others', async () => {
    const bad = await RawPeer.connect(sock);
    const other = await TtrpcClient.connect(sock);
    bad.socket.write(encodeFrame(1, FrameType.Response, 0, Buffer.from('nope')));
    await bad.until(() => bad.closed, 'the server to close the connection');
    const junk = await RawPeer.connect(sock);
    junk.socket.write(Buffer.from([0, 0, 0, 2, 0, 0, 0, 1, 0x7f, 0, 1, 2]));
    await junk.until(() => junk.closed, 'the server to close the junk connection');
    expect(dec(await other.call('test.Echo', 'Echo', enc('unaffected')))).toBe('unaffected');
    expect(dec(await client.call('test.Echo', 'Echo', enc('unaffected')))).toBe('unaffected');
    other.close();
  });

  it('fails calls in flight when the connection goes away', async () => {
    const c = await TtrpcClient.connect(sock);
    const p = c.call('test.Echo', 'Sleep', enc('3000'));
    let reason: TtrpcError | undefined;
    c.onClose((r) => {
      reason = r;
    });
    setTimeout(() => c.close(), 50);
    await expect(p).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    expect(reason?.code).toBe(Code.UNAVAILABLE);
    await expect(c.call('test.Echo', 'Echo', enc(''))).rejects.toMatchObject({ code: Code.UNAVAILABLE });
  });

  it('reports a clear error when nothing listens', async () => {
    await expect(TtrpcClient.connect(path.join(dir, 'absent.sock'))).rejects.toMatchObject({ code: Code.UNAVAILABLE, message: expect.stringContaining('absent.sock') });
  });

  it('finishes calls in flight before a graceful close', async () => {
    const s2 = new TtrpcServer();
    const sock2 = path.join(dir, 'graceful.sock');
    s2.register('test.Slow', {
      Call: async (p) => {
        await new Promise((r) => setTimeout(r, 200));
        return p;
      },
    });
    await s2.listen(sock2);
    const c = await TtrpcClient.connect(sock2);
    const pending = c.call('test.Slow', 'Call', enc('done'));
    await new Promise((r) => setTimeout(r, 50));
    await s2.close({ graceful: true });
    expect(dec(await pending)).toBe('done');
    await expect(TtrpcClient.connect(sock2)).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    c.close();
  });
});
