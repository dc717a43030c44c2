/**
 * The shim v2 Task service (ttrpc service "containerd.task.v2.Task"): the interface the shim's lifecycle
 * code implements, the function that serves an implementation on a TtrpcServer, and a typed client
 * (what containerd does to a shim, and what tests and the vrun CLI can do too).
 */
import type { CallOptions, TtrpcClient } from '../../ttrpc/client.js';
import { NAMESPACE_METADATA_KEY } from '../../ttrpc/messages.js';
import type { InitOf, MessageOf, MessageType } from '../../ttrpc/protobuf/schema.js';
import { Empty } from '../../ttrpc/protobuf/well-known.js';
import type { CallContext, TtrpcServer, UnaryMethod } from '../../ttrpc/server.js';
import { Code, TtrpcError } from '../../ttrpc/status.js';
import * as m from './task-messages.js';

export const TASK_SERVICE = 'containerd.task.v2.Task';

/** Every RPC of the service: wire method name, request and response types, and the implementation's key. */
export const TaskRpcs = {
  State: { key: 'state', request: m.StateRequest, response: m.StateResponse },
  Create: { key: 'create', request: m.CreateTaskRequest, response: m.CreateTaskResponse },
  Start: { key: 'start', request: m.StartRequest, response: m.StartResponse },
  Delete: { key: 'delete', request: m.DeleteRequest, response: m.DeleteResponse },
  Pids: { key: 'pids', request: m.PidsRequest, response: m.PidsResponse },
  Pause: { key: 'pause', request: m.PauseRequest, response: Empty },
  Resume: { key: 'resume', request: m.ResumeRequest, response: Empty },
  Checkpoint: { key: 'checkpoint', request: m.CheckpointTaskRequest, response: Empty },
  Kill: { key: 'kill', request: m.KillRequest, response: Empty },
  Exec: { key: 'exec', request: m.ExecProcessRequest, response: Empty },
  ResizePty: { key: 'resizePty', request: m.ResizePtyRequest, response: Empty },
  CloseIO: { key: 'closeIO', request: m.CloseIORequest, response: Empty },
  Update: { key: 'update', request: m.UpdateTaskRequest, response: Empty },
  Wait: { key: 'wait', request: m.WaitRequest, response: m.WaitResponse },
  Stats: { key: 'stats', request: m.StatsRequest, response: m.StatsResponse },
  Connect: { key: 'connect', request: m.ConnectRequest, response: m.ConnectResponse },
  Shutdown: { key: 'shutdown', request: m.ShutdownRequest, response: Empty },
} as const;

type Handler<Req, Resp> = (req: Req, ctx: CallContext) => Promise<Resp>;
type EmptyInit = InitOf<typeof Empty>;

/**
 * What the shim implements: one method per RPC. Throw a TtrpcError with the code that says what went
 * wrong (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, INVALID_ARGUMENT...) — containerd turns codes
 * into its own error kinds; anything else reaches containerd as UNKNOWN with the error's message.
 * Responses may leave fields out; they take their proto3 defaults.
 */
export interface ShimTaskService {
  state: Handler<m.StateRequest, InitOf<typeof m.StateResponse>>;
  create: Handler<m.CreateTaskRequest, InitOf<typeof m.CreateTaskResponse>>;
  start: Handler<m.StartRequest, InitOf<typeof m.StartResponse>>;
  delete: Handler<m.DeleteRequest, InitOf<typeof m.DeleteResponse>>;
  pids: Handler<m.PidsRequest, InitOf<typeof m.PidsResponse>>;
  pause: Handler<m.PauseRequest, EmptyInit | void>;
  resume: Handler<m.ResumeRequest, EmptyInit | void>;
  /** Optional: without it, Checkpoint answers UNIMPLEMENTED with an explanation. */
  checkpoint?: Handler<m.CheckpointTaskRequest, EmptyInit | void>;
  kill: Handler<m.KillRequest, EmptyInit | void>;
  exec: Handler<m.ExecProcessRequest, EmptyInit | void>;
  resizePty: Handler<m.ResizePtyRequest, EmptyInit | void>;
  closeIO: Handler<m.CloseIORequest, EmptyInit | void>;
  update: Handler<m.UpdateTaskRequest, EmptyInit | void>;
  wait: Handler<m.WaitRequest, InitOf<typeof m.WaitResponse>>;
  stats: Handler<m.StatsRequest, InitOf<typeof m.StatsResponse>>;
  connect: Handler<m.ConnectRequest, InitOf<typeof m.ConnectResponse>>;
  shutdown: Handler<m.ShutdownRequest, EmptyInit | void>;
}

export const CHECKPOINT_UNSUPPORTED_MESSAGE =
  'checkpoint is not supported by vrun: tasks run inside a VM and cannot be checkpointed with CRIU from the host';

/**
 * The containerd namespace sent with a call as ttrpc metadata, or undefined. containerd 1.6 does NOT send
 * it to shims (seen in test/shim/protocol-containerd.test.ts): a shim must take its namespace from the
 * `-namespace` flag of its `start` invocation; this only helps with clients that do send it (ours do).
 */
export function namespaceOf(ctx: CallContext): string | undefined {
  return ctx.metadata.get(NAMESPACE_METADATA_KEY)?.[0];
}

/** Decodes a request, or fails the call with INVALID_ARGUMENT naming what could not be read. */
function decodeRequest<T>(type: MessageType<T, unknown>, payload: Uint8Array, rpc: string): T {
  try {
    return type.decode(payload);
  } catch (err) {
    throw new TtrpcError(Code.INVALID_ARGUMENT, `${TASK_SERVICE}/${rpc}: malformed ${type.typeName}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Registers `impl` as the containerd.task.v2.Task service on `server`. */
export function mountTaskService(server: TtrpcServer, impl: ShimTaskService): void {
  const methods: Record<string, UnaryMethod> = {};
  for (const [rpc, desc] of Object.entries(TaskRpcs)) {
    const request = desc.request as MessageType<unknown, unknown>;
    const response = desc.response as MessageType<unknown, unknown>;
    const handler = impl[desc.key] as Handler<unknown, unknown> | undefined;
    methods[rpc] = async (payload, ctx) => {
      if (!handler) {
        throw new TtrpcError(Code.UNIMPLEMENTED, rpc === 'Checkpoint' ? CHECKPOINT_UNSUPPORTED_MESSAGE : `${TASK_SERVICE}/${rpc} is not implemented`);
      }
      const req = decodeRequest(request, payload, rpc);
      const resp = await handler.call(impl, req, ctx);
      return response.encode(resp ?? {});
    };
  }
  server.register(TASK_SERVICE, methods);
}

type TaskRpcTable = typeof TaskRpcs;
/** The typed client: one method per RPC, named like the implementation's (create, resizePty, closeIO...). */
export type TaskServiceClient = {
  [R in keyof TaskRpcTable as TaskRpcTable[R]['key']]: (
    req: InitOf<TaskRpcTable[R]['request']>,
    opts?: CallOptions,
  ) => Promise<MessageOf<TaskRpcTable[R]['response']>>;
};

/**
 * A Task service client on an open ttrpc connection. `namespace` is sent with every call the way
 * containerd sends it, so an implementation sees the same metadata it would see from containerd.
 */
export function taskServiceClient(client: TtrpcClient, opts: { namespace?: string } = {}): TaskServiceClient {
  const out: Record<string, (req: unknown, callOpts?: CallOptions) => Promise<unknown>> = {};
  for (const [rpc, desc] of Object.entries(TaskRpcs)) {
    const request = desc.request as MessageType<unknown, unknown>;
    const response = desc.response as MessageType<unknown, unknown>;
    out[desc.key] = async (req, callOpts = {}) => {
      const metadata = opts.namespace === undefined ? callOpts.metadata : { [NAMESPACE_METADATA_KEY]: opts.namespace, ...callOpts.metadata };
      const payload = await client.call(TASK_SERVICE, rpc, request.encode(req), { ...callOpts, metadata });
      try {
        return response.decode(payload);
      } catch (err) {
        throw new TtrpcError(Code.INTERNAL, `${TASK_SERVICE}/${rpc}: malformed ${response.typeName} in the response: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
  }
  return out as unknown as TaskServiceClient;
}
