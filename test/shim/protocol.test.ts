import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TtrpcClient } from '../../src/ttrpc/client.js';
import type { InitOf } from '../../src/ttrpc/protobuf/schema.js';
import { TtrpcServer, type CallContext } from '../../src/ttrpc/server.js';
import { Code, TtrpcError } from '../../src/ttrpc/status.js';
import { TaskStatus } from '../../src/shim/protocol/types.js';
import {
  CHECKPOINT_UNSUPPORTED_MESSAGE,
  TASK_SERVICE,
  TaskRpcs,
  mountTaskService,
  namespaceOf,
  taskServiceClient,
  type ShimTaskService,
} from '../../src/shim/protocol/task-service.js';

type Rpcs = typeof TaskRpcs;
type RpcName = keyof Rpcs;

const exitedAt = { seconds: 1_700_000_000, nanos: 123_456_789 };
const json = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

/** A realistic request and response for every RPC, as containerd and a shim would exchange them. */
const examples: { [R in RpcName]: { request: InitOf<Rpcs[R]['request']>; response: InitOf<Rpcs[R]['response']> } } = {
  State: {
    request: { id: 'c1', execId: 'e1' },
    response: { id: 'c1', bundle: '/run/containerd/io.containerd.runtime.v2.task/default/c1', pid: 4242, status: TaskStatus.STOPPED, stdin: '/fifo/in', stdout: '/fifo/out', stderr: '/fifo/err', terminal: true, exitStatus: 137, exitedAt, execId: 'e1' },
  },
  Create: {
    request: {
      id: 'c1',
      bundle: '/run/containerd/io.containerd.runtime.v2.task/default/c1',
      rootfs: [{ type: 'overlay', source: 'overlay', target: '', options: ['lowerdir=/l1:/l2', 'upperdir=/u', 'workdir=/w'] }],
      terminal: false,
      stdin: '',
      stdout: '/run/containerd/fifo/1/c1-stdout',
      stderr: '/run/containerd/fifo/1/c1-stderr',
      options: { typeUrl: 'containerd.runc.v1.Options', value: Uint8Array.from([0x0a, 0x03, 0x72, 0x75, 0x6e]) },
    },
    response: { pid: 1 },
  },
  Start: { request: { id: 'c1' }, response: { pid: 77 } },
  Delete: { request: { id: 'c1', execId: 'e2' }, response: { pid: 77, exitStatus: 0, exitedAt } },
  Pids: {
    request: { id: 'c1' },
    response: { processes: [{ pid: 1 }, { pid: 12, info: { typeUrl: 'containerd.runc.v1.ProcessDetails', value: Uint8Array.from([0x0a, 0x02, 0x65, 0x31]) } }] },
  },
  Pause: { request: { id: 'c1' }, response: {} },
  Resume: { request: { id: 'c1' }, response: {} },
  Checkpoint: { request: { id: 'c1', path: '/tmp/cp' }, response: {} },
  Kill: { request: { id: 'c1', execId: 'e1', signal: 9, all: true }, response: {} },
  Exec: {
    request: {
      id: 'c1',
      execId: 'e1',
      terminal: true,
      stdin: '/fifo/e1-in',
      stdout: '/fifo/e1-out',
      spec: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: json({ args: ['sh', '-c', 'echo hi'], cwd: '/', env: ['PATH=/bin'] }) },
    },
    response: {},
  },
  ResizePty: { request: { id: 'c1', execId: 'e1', width: 132, height: 43 }, response: {} },
  CloseIO: { request: { id: 'c1', execId: 'e1', stdin: true }, response: {} },
  Update: {
    request: {
      id: 'c1',
      resources: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources', value: json({ memory: { limit: 67108864 } }) },
      annotations: { 'io.kubernetes.cri.sandbox-id': 'sb1', 'example.com/x': 'ü' },
    },
    response: {},
  },
  Wait: { request: { id: 'c1', execId: 'e1' }, response: { exitStatus: 3, exitedAt } },
  Stats: { request: { id: 'c1' }, response: { stats: { typeUrl: 'io.containerd.cgroups.v1.Metrics', value: Uint8Array.from([0x12, 0x00]) } } },
  Connect: { request: { id: 'c1' }, response: { shimPid: 1000, taskPid: 1001, version: '2' } },
  Shutdown: { request: { id: 'c1', now: true }, response: {} },
};

const rpcNames = Object.keys(TaskRpcs) as RpcName[];

describe('shim v2 Task messages', () => {
  it.each(rpcNames)('%s request and response survive encode/decode unchanged', (rpc) => {
    const { request: reqType, response: respType } = TaskRpcs[rpc] as { request: { encode(v: unknown): Uint8Array; decode(b: Uint8Array): unknown; create(v: unknown): unknown }; response: { encode(v: unknown): Uint8Array; decode(b: Uint8Array): unknown; create(v: unknown): unknown } };
    const ex = examples[rpc];
    const req = reqType.decode(reqType.encode(ex.request));
    expect(req).toEqual(reqType.create(ex.request));
    expect(req).toMatchObject(ex.request);
    const resp = respType.decode(respType.encode(ex.response));
    expect(resp).toMatchObject(ex.response);
  });

  it('fills defaults for what a peer left out and keeps absent sub-messages absent', () => {
    const state = TaskRpcs.State.response.decode(new Uint8Array(0));
    expect(state).toEqual({ id: '', bundle: '', pid: 0, status: TaskStatus.UNKNOWN, stdin: '', stdout: '', stderr: '', terminal: false, exitStatus: 0, execId: '' });
    expect(state.exitedAt).toBeUndefined();
    const create = TaskRpcs.Create.request.decode(new Uint8Array(0));
    expect(create.rootfs).toEqual([]);
    expect(TaskRpcs.Update.request.decode(new Uint8Array(0)).annotations).toEqual({});
  });
});

describe('shim v2 Task service over ttrpc', () => {
  let dir: string;
  let server: TtrpcServer;
  let conn: TtrpcClient;
  const seen: { rpc: string; request: unknown; namespace: string | undefined }[] = [];

  function recording<R extends RpcName>(rpc: R) {
    return async (req: unknown, ctx: CallContext): Promise<InitOf<Rpcs[R]['response']>> => {
      seen.push({ rpc, request: req, namespace: namespaceOf(ctx) });
      if (rpc === 'Kill' && (req as { id: string }).id === 'missing') throw new TtrpcError(Code.NOT_FOUND, 'container missing: not found');
      return examples[rpc].response;
    };
  }

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-shimproto-'));
    // A small implementation that records what it was asked and answers with the examples; no checkpoint.
    const impl: ShimTaskService = {
      state: recording('State'),
      create: recording('Create'),
      start: recording('Start'),
      delete: recording('Delete'),
      pids: recording('Pids'),
      pause: recording('Pause'),
      resume: recording('Resume'),
      kill: recording('Kill'),
      exec: recording('Exec'),
      resizePty: recording('ResizePty'),
      closeIO: recording('CloseIO'),
      update: recording('Update'),
      wait: recording('Wait'),
      stats: recording('Stats'),
      connect: recording('Connect'),
      shutdown: recording('Shutdown'),
    };
    server = new TtrpcServer();
    mountTaskService(server, impl);
    await server.listen(path.join(dir, 'shim.sock'));
    conn = await TtrpcClient.connect(path.join(dir, 'shim.sock'));
  });

  afterAll(async () => {
    conn.close();
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it.each(rpcNames.filter((r) => r !== 'Checkpoint'))('%s reaches the implementation intact and its answer reaches the client', async (rpc) => {
    const client = taskServiceClient(conn, { namespace: 'k8s.io' });
    const desc = TaskRpcs[rpc];
    const call = client[desc.key] as (req: unknown) => Promise<unknown>;
    seen.length = 0;
    const resp = await call(examples[rpc].request);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.rpc).toBe(rpc);
    expect(seen[0]!.namespace).toBe('k8s.io');
    expect(seen[0]!.request).toEqual((desc.request as { create(v: unknown): unknown }).create(examples[rpc].request));
    expect(resp).toEqual((desc.response as { create(v: unknown): unknown }).create(examples[rpc].response));
  });

  it('answers Checkpoint with UNIMPLEMENTED and a clear explanation', async () => {
    const client = taskServiceClient(conn);
    const err = await client.checkpoint(examples.Checkpoint.request).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TtrpcError);
    expect(err).toMatchObject({ code: Code.UNIMPLEMENTED, message: CHECKPOINT_UNSUPPORTED_MESSAGE });
  });

  it('carries an implementation error code to the caller', async () => {
    const client = taskServiceClient(conn);
    await expect(client.kill({ id: 'missing', signal: 15 })).rejects.toMatchObject({ code: Code.NOT_FOUND, message: 'container missing: not found' });
  });

  it('answers a request it cannot decode with INVALID_ARGUMENT naming the message, and keeps serving', async () => {
    // Field 1 (id) sent as a varint instead of a string.
    const err = await conn.call(TASK_SERVICE, 'Create', Uint8Array.from([0x08, 0x01])).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringContaining('containerd.task.v2.CreateTaskRequest') });
    await expect(taskServiceClient(conn).connect({ id: 'c1' })).resolves.toMatchObject({ shimPid: 1000 });
  });

  it('answers an RPC the Task service does not have with UNIMPLEMENTED', async () => {
    await expect(conn.call(TASK_SERVICE, 'Restore', new Uint8Array(0))).rejects.toMatchObject({ code: Code.UNIMPLEMENTED, message: expect.stringContaining('"Restore"') });
  });
});
