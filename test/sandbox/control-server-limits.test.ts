import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { controlCall } from '../../src/sandbox/control-client.js';
import { MAX_CLIENT_BACKLOG, ControlServer } from '../../src/sandbox/control-server.js';
import { FrameDecoder, FrameType } from '../../src/sandbox/frames.js';
import type { OutputSink, Sandbox } from '../../src/sandbox/sandbox.js';
import type { SandboxState } from '../../src/sandbox/state.js';

/**
 * ctl.sock against clients that misbehave and guests that never answer: the sandbox process's memory stays
 * bounded whatever a client reads, and `stop` settles within its deadline whatever the guest does.
 */
class FakeSandbox {
  readonly sinks = new Set<OutputSink>();
  readonly ready = Promise.resolve();
  readonly exit = { exitStatus: 0, oomKilled: false };
  readonly failed = undefined;
  readonly teardowns: Partial<SandboxState>[] = [];
  private finish: () => void = () => undefined;
  private readonly done = new Promise<void>((r) => (this.finish = r));
  /** What stop() and teardown() do: 'hang' is a guest (or sandbox) that never answers. */
  constructor(private readonly behaviour: { stop: 'hang' | 'ok'; teardown: 'hang' | 'ok' } = { stop: 'ok', teardown: 'ok' }) {}

  addSink(s: OutputSink): () => boolean {
    this.sinks.add(s);
    return () => this.sinks.delete(s);
  }
  openStdin(): never {
    throw new Error('no stdin here');
  }
  async start(): Promise<void> {}
  async resize(): Promise<void> {}
  async signal(): Promise<void> {}
  whenDone(): Promise<void> {
    return this.done;
  }
  stop(): Promise<void> {
    return this.behaviour.stop === 'hang' ? new Promise(() => undefined) : Promise.resolve(this.finish());
  }
  teardown(final: Partial<SandboxState>): Promise<void> {
    this.teardowns.push(final);
    if (this.behaviour.teardown === 'hang') return new Promise(() => undefined);
    this.finish();
    return Promise.resolve();
  }
  end(): void {
    this.finish();
  }
  emit(which: 'stdout' | 'stderr', chunk: Buffer): void {
    for (const s of this.sinks) s[which](chunk);
  }
}

const silent = pino({ level: 'silent' });
const dir = mkdtempSync(path.join(os.tmpdir(), 'vrun-ctl-'));
let n = 0;
const servers: ControlServer[] = [];
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(fake: FakeSandbox, limits: ConstructorParameters<typeof ControlServer>[3] = {}): Promise<{ sock: string; server: ControlServer }> {
  const sock = path.join(dir, `ctl${n++}.sock`);
  const server = new ControlServer(fake as unknown as Sandbox, sock, silent, limits);
  await server.listen();
  servers.push(server);
  return { sock, server };
}

function serverConns(server: ControlServer): Set<net.Socket> {
  return (server as unknown as { conns: Set<net.Socket> }).conns;
}

const tick = () => new Promise((r) => setImmediate(r));
async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('a client that stops reading the container output', () => {
  it('is dropped once its backlog passes the cap; the sandbox does not buffer the rest', async () => {
    const fake = new FakeSandbox();
    const { sock, server } = await serve(fake);
    const client = net.createConnection(sock);
    await new Promise((r) => client.once('connect', r));
    client.write('{"op":"attach","start":false,"stdin":false}\n');
    client.pause(); // and never reads while the output floods
    await waitFor(() => fake.sinks.size === 1, 'the attach');

    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const flood = 64 << 20; // 64 MiB, 16 times the cap
    let maxBacklog = 0;
    let sentWhileAttached = 0;
    for (let sent = 0; sent < flood; sent += chunk.length) {
      if (fake.sinks.size > 0) sentWhileAttached += chunk.length;
      fake.emit('stdout', chunk);
      for (const c of serverConns(server)) maxBacklog = Math.max(maxBacklog, c.writableLength);
      if (sent % (1 << 20) === 0) await tick();
    }
    // Bounded: the cap plus the one chunk that crossed it (and the reason frame).
    expect(maxBacklog).toBeLessThanOrEqual(MAX_CLIENT_BACKLOG + chunk.length + 4096);
    // Dropped: no longer fed, long before the flood ended.
    expect(fake.sinks.size).toBe(0);
    expect(sentWhileAttached).toBeLessThan(flood / 2);

    // When it reads again, it gets what was queued, then one line saying why, then the end.
    const dec = new FrameDecoder();
    let stdoutBytes = 0;
    let last: { type: number; payload: Buffer } | undefined;
    client.on('data', (d: Buffer) => {
      for (const f of dec.push(d)) {
        if (f.type === FrameType.stdout) stdoutBytes += f.payload.length;
        last = f;
      }
    });
    client.resume();
    await new Promise((r) => client.once('end', r));
    expect(last?.type).toBe(FrameType.error);
    const msg = JSON.parse(last?.payload.toString() ?? '{}') as { message: string; reason: string };
    expect(msg.reason).toBe('slow-client');
    expect(msg.message).toMatch(/did not read the container's output fast enough.*vrun logs/);
    expect(stdoutBytes).toBeLessThan(MAX_CLIENT_BACKLOG + (4 << 20)); // what was queued plus kernel buffers, not 64 MiB
    client.destroy();
    fake.end();
  });

  it('a client that keeps up gets everything and the exit', async () => {
    const fake = new FakeSandbox();
    const { sock } = await serve(fake);
    const client = net.createConnection(sock);
    const dec = new FrameDecoder();
    let stdoutBytes = 0;
    const types: number[] = [];
    client.on('data', (d: Buffer) => {
      for (const f of dec.push(d)) {
        if (f.type === FrameType.stdout) stdoutBytes += f.payload.length;
        else types.push(f.type);
      }
    });
    client.write('{"op":"attach","start":false,"stdin":false}\n');
    await waitFor(() => fake.sinks.size === 1, 'the attach');
    const chunk = Buffer.alloc(64 * 1024, 0x62);
    const total = 32 << 20;
    for (let sent = 0; sent < total; sent += chunk.length) {
      fake.emit('stdout', chunk);
      // A reader that keeps up: the producer waits while the client's backlog is large (as the agent's pace would).
      await waitFor(() => [...fake.sinks].length === 0 || stdoutBytes > sent - (2 << 20), 'the client to read');
    }
    expect(fake.sinks.size).toBe(1);
    fake.end();
    await new Promise((r) => client.once('end', r));
    expect(stdoutBytes).toBe(total);
    expect(types).toContain(FrameType.exit);
  });

  it('a chunk larger than a frame may be is sent in pieces, not thrown on', async () => {
    const fake = new FakeSandbox();
    const { sock } = await serve(fake);
    const client = net.createConnection(sock);
    const dec = new FrameDecoder();
    let stdoutBytes = 0;
    client.on('data', (d: Buffer) => {
      for (const f of dec.push(d)) if (f.type === FrameType.stdout) stdoutBytes += f.payload.length;
    });
    client.write('{"op":"attach","start":false,"stdin":false}\n');
    await waitFor(() => fake.sinks.size === 1, 'the attach');
    expect(() => fake.emit('stdout', Buffer.alloc(3 << 20, 0x63))).not.toThrow();
    fake.end();
    await new Promise((r) => client.once('end', r));
    expect(stdoutBytes).toBe(3 << 20);
  });
});

describe('stop with a guest that never answers', () => {
  it('kills the VM (teardown) after time + the kill grace, and replies', async () => {
    const fake = new FakeSandbox({ stop: 'hang', teardown: 'ok' });
    const { sock } = await serve(fake, { stopKillGraceMs: 300, stopTeardownMs: 2000 });
    const t0 = Date.now();
    await controlCall(sock, { op: 'stop', timeoutS: 1 });
    const ms = Date.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(1250);
    expect(ms).toBeLessThan(3000);
    expect(fake.teardowns).toEqual([expect.objectContaining({ status: 'exited', exitCode: 137, error: expect.stringMatching(/did not confirm the stop.*VM was killed/) })]);
  });

  it('reports failure, still in bounded time, when even the teardown hangs', async () => {
    const fake = new FakeSandbox({ stop: 'hang', teardown: 'hang' });
    const { sock } = await serve(fake, { stopKillGraceMs: 200, stopTeardownMs: 500 });
    const t0 = Date.now();
    await expect(controlCall(sock, { op: 'stop', timeoutS: 0 })).rejects.toThrow(/did not finish tearing down/);
    expect(Date.now() - t0).toBeLessThan(2500);
    fake.end();
  });

  it('a client gives up on a sandbox that never replies at its reply deadline', async () => {
    // A listener that accepts and says nothing: a stuck sandbox process.
    const sockPath = path.join(dir, `mute${n++}.sock`);
    const mute = net.createServer(() => undefined);
    await new Promise<void>((r) => mute.listen(sockPath, r));
    const t0 = Date.now();
    await expect(controlCall(sockPath, { op: 'stop', timeoutS: 0 }, { replyTimeoutMs: 300 })).rejects.toThrow(/did not answer "stop" within 0.3 s/);
    expect(Date.now() - t0).toBeLessThan(2000);
    mute.close();
  });
});
