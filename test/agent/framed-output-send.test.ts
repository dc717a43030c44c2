import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import { afterEach, describe, expect, it } from 'vitest';
import { sendWireChunksUncopied } from '../../src/agent/guest/framed-output-send.js';
import { isWireChunk, OUTPUT_CHUNK_HEADROOM, wireChunkCopy, wireChunkInPlace, type WireChunk } from '../../src/agent/guest/output-chunk-wire.js';
import { loadAgentProto } from '../../src/agent/protocol/proto.js';

type StreamMethod = MethodDefinition<object, object, object, object>;

/**
 * A real grpc-js server with only ReadStdout, serializing output chunks as the agent does, and a real
 * client of it over a unix socket. The handler streams `chunks` after `prepare` ran on the call.
 */
async function serve(chunks: WireChunk[], prepare: (call: object) => boolean, interceptors: grpc.ServerInterceptor[] = []) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-framed-'));
  const socket = path.join(dir, 'grpc.sock');
  const def = (loadAgentProto().service as unknown as Record<string, StreamMethod>).ReadStdout as StreamMethod;
  const method: StreamMethod = { ...def, responseSerialize: (msg: object) => (isWireChunk(msg) ? msg.wire : def.responseSerialize(msg)) };
  const server = new grpc.Server({ interceptors });
  const installed: boolean[] = [];
  server.addService({ ReadStdout: method } as grpc.ServiceDefinition, {
    ReadStdout: (call: grpc.ServerWritableStream<object, WireChunk>) => {
      installed.push(prepare(call));
      for (const c of chunks) call.write(c);
      call.end();
    },
  });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  const client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
  const read = async (): Promise<Buffer> => {
    const call = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, {});
    const parts: Buffer[] = [];
    for await (const m of call) parts.push((m as { data: Buffer }).data);
    return Buffer.concat(parts);
  };
  const close = async () => {
    client.close();
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  };
  return { read, installed, close };
}

describe('output chunks sent without grpc-js copying them', () => {
  let close: (() => Promise<void>) | null = null;
  afterEach(async () => {
    await close?.();
    close = null;
  });

  function chunks(): { list: WireChunk[]; bytes: Buffer } {
    // Sizes around the varint boundaries of the length, an empty chunk, and a read-sized one in place.
    const list: WireChunk[] = [];
    const parts: Buffer[] = [];
    for (const n of [0, 1, 127, 128, 16383, 16384, 65536]) {
      const b = randomBytes(n);
      list.push(wireChunkCopy(b));
      parts.push(b);
    }
    const slab = Buffer.allocUnsafe(OUTPUT_CHUNK_HEADROOM + 256 * 1024);
    const data = randomBytes(256 * 1024);
    data.copy(slab, OUTPUT_CHUNK_HEADROOM);
    list.push(wireChunkInPlace(slab, OUTPUT_CHUNK_HEADROOM, data.length));
    parts.push(data);
    return { list, bytes: Buffer.concat(parts) };
  }

  it('installs on a plain grpc-js call, and the client receives every byte in order', async () => {
    const { list, bytes } = chunks();
    const s = await serve(list, sendWireChunksUncopied);
    close = s.close;
    expect((await s.read()).equals(bytes)).toBe(true);
    expect(s.installed).toEqual([true]);
  });

  it('keeps grpc-js own path when a server interceptor stands in between, with the same bytes', async () => {
    const { list, bytes } = chunks();
    const passThrough: grpc.ServerInterceptor = (_desc, call) => new grpc.ServerInterceptingCall(call);
    const s = await serve(list, sendWireChunksUncopied, [passThrough]);
    close = s.close;
    expect((await s.read()).equals(bytes)).toBe(true);
    expect(s.installed).toEqual([false]);
  });

  it('frames each chunk exactly as grpc-js would: prefix, then the protobuf encoding', () => {
    for (const n of [0, 5, 200, 70000]) {
      const c = wireChunkCopy(randomBytes(n));
      expect(c.framed[0]).toBe(0);
      expect(c.framed.readUInt32BE(1)).toBe(c.wire.length);
      expect(c.framed.subarray(5).equals(c.wire)).toBe(true);
      expect(c.wire.subarray(c.wire.length - n).equals(c.data)).toBe(true);
    }
  });
});
