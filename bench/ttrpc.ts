/**
 * ttrpc (our TypeScript client and server) against gRPC (@grpc/grpc-js) on the same machine, both over a
 * unix socket with the same echo handler: sequential round-trip latency, pipelined throughput, and 1 MiB
 * payloads. ttrpc exists because gRPC's HTTP/2 is heavy for shim <-> containerd traffic; this shows
 * what our implementation of it buys in Node.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { TtrpcClient } from '../src/ttrpc/client.js';
import { TtrpcServer } from '../src/ttrpc/server.js';

type Call = (payload: Buffer) => Promise<Uint8Array>;

interface Peer {
  name: string;
  call: Call;
  close(): Promise<void>;
}

async function ttrpcPeer(dir: string): Promise<Peer> {
  const server = new TtrpcServer({ maxConcurrentRequests: 256 });
  server.register('bench.Echo', { Echo: (p) => p });
  const sock = path.join(dir, 'ttrpc.sock');
  await server.listen(sock);
  const client = await TtrpcClient.connect(sock);
  return {
    name: 'ttrpc',
    call: (p) => client.call('bench.Echo', 'Echo', p),
    close: async () => {
      client.close();
      await server.close();
    },
  };
}

async function grpcPeer(dir: string): Promise<Peer> {
  const identity = (b: Buffer): Buffer => b;
  const service: grpc.ServiceDefinition = {
    Echo: { path: '/bench.Echo/Echo', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  };
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 8 << 20, 'grpc.max_send_message_length': 8 << 20 });
  server.addService(service, {
    Echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, call.request),
  });
  const address = `unix://${path.join(dir, 'grpc.sock')}`;
  await new Promise<void>((resolve, reject) => server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  const Client = grpc.makeGenericClientConstructor(service, 'Echo');
  const client = new Client(address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': 8 << 20, 'grpc.max_send_message_length': 8 << 20 });
  const call: Call = (p) =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest('/bench.Echo/Echo', identity, identity, p, (err: grpc.ServiceError | null, value?: Buffer) => (err || !value ? reject(err ?? new Error('no response')) : resolve(value)));
    });
  return {
    name: 'grpc-js',
    call,
    close: async () => {
      client.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
  };
}

async function sequentialLatencyUs(call: Call, n: number): Promise<number> {
  const payload = Buffer.alloc(64, 1);
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await call(payload);
    samples.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)]!;
}

async function throughputPerSec(call: Call, concurrency: number, ms: number): Promise<number> {
  const payload = Buffer.alloc(64, 2);
  const end = Date.now() + ms;
  let done = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        await call(payload);
        done++;
      }
    }),
  );
  return (done * 1000) / ms;
}

async function largeMiBPerSec(call: Call, n: number): Promise<number> {
  const payload = Buffer.alloc(1 << 20, 3);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await call(payload);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return (n * 2) / secs; // MiB moved per second, both directions
}

export async function run(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-bench-ttrpc-'));
  try {
    const peers = [await ttrpcPeer(dir), await grpcPeer(dir)];
    const results = new Map<string, { latency: number; throughput: number; large: number }>();
    for (const p of peers) {
      await sequentialLatencyUs(p.call, 300); // warm-up
      results.set(p.name, {
        latency: await sequentialLatencyUs(p.call, 3000),
        throughput: await throughputPerSec(p.call, 32, 2000),
        large: await largeMiBPerSec(p.call, 40),
      });
    }
    for (const p of peers) await p.close();
    const t = results.get('ttrpc')!;
    const g = results.get('grpc-js')!;
    const line = (what: string, a: number, b: number, unit: string, better: 'lower' | 'higher'): void => {
      process.stdout.write(`${what.padEnd(34)} ttrpc ${a.toFixed(1).padStart(9)} ${unit.padEnd(6)} grpc-js ${b.toFixed(1).padStart(9)} ${unit.padEnd(6)} ratio ttrpc/grpc ${(a / b).toFixed(2)} (${better} is better)\n`);
    };
    line('unary round trip, 64 B, median', t.latency, g.latency, 'us', 'lower');
    line('unary calls/s, 32 in flight', t.throughput, g.throughput, '/s', 'higher');
    line('1 MiB request + response', t.large, g.large, 'MiB/s', 'higher');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
