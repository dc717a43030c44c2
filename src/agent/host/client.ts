/**
 * The host's typed client of the guest agent (the sandbox and the shim use it). It speaks gRPC over a unix
 * socket: QEMU's chardev for the guest's `vrun.agent` virtio-console port, or the agent's own socket when it
 * runs on the host in tests. Everything the guest sends back is untrusted: replies are bounded by the gRPC
 * message size and their numbers are range-checked before anyone uses them.
 */
import { Duplex, Readable, Transform, Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { VrunError } from '../../common/errors.js';
import type { OciProcess, OciSpec } from '../../common/oci-spec.js';
import type { AgentClient as GeneratedAgentClient, AgentDefinition } from '../protocol/generated/vrun/agent/v1/Agent.js';
import type { GuestDetailsResponse__Output } from '../protocol/generated/vrun/agent/v1/GuestDetailsResponse.js';
import type { OomEvent__Output } from '../protocol/generated/vrun/agent/v1/OomEvent.js';
import type { OutputChunk__Output } from '../protocol/generated/vrun/agent/v1/OutputChunk.js';
import type { PortForwardResponse__Output } from '../protocol/generated/vrun/agent/v1/PortForwardResponse.js';
import type { ProcessInfo__Output } from '../protocol/generated/vrun/agent/v1/ProcessInfo.js';
import type { WriteStdinRequest } from '../protocol/generated/vrun/agent/v1/WriteStdinRequest.js';
import type { WriteStdinResponse__Output } from '../protocol/generated/vrun/agent/v1/WriteStdinResponse.js';
import { AgentError, isServiceError, toAgentError } from './agent-error.js';
import { checkInt, type ContainerStats, validPid, validStats, validWait } from './reply-checks.js';
import { STDIO_WIRE, type StdioKind, type WaitResult } from '../protocol/process.js';
import { loadAgentProto, MAX_MESSAGE_BYTES, STDIO_CHUNK_BYTES } from '../protocol/proto.js';

export type { GuestDetailsResponse__Output as GuestDetails } from '../protocol/generated/vrun/agent/v1/GuestDetailsResponse.js';
export type { OomEvent__Output as OomEvent } from '../protocol/generated/vrun/agent/v1/OomEvent.js';
export type { ProcessInfo__Output as ProcessInfo } from '../protocol/generated/vrun/agent/v1/ProcessInfo.js';

/** A process of a container: its init process (`execId` empty or absent) or one started by exec. */
export interface ProcessRef {
  containerId: string;
  execId?: string;
}

export interface CreateContainerOptions {
  containerId: string;
  spec: OciSpec;
  /** Absolute path of the rootfs inside the guest, under the agent's share dir (or its state dir). */
  rootfs: string;
  stdio?: StdioKind;
  /** Start it in the same call (one round trip, like `crun run`); output waits in its pipe for a reader. */
  start?: boolean;
}

export interface ExecOptions {
  containerId: string;
  execId: string;
  process: OciProcess;
  stdio?: StdioKind;
  /** Docker's `-u USER[:GROUP]`, resolved by the agent in the container's rootfs; replaces process.user. */
  userSpec?: string;
}

/** cgroup v2 statistics of a container; every section present (absent controllers read as zeros). */

export interface DnsConfig {
  nameservers: string[];
  searches?: string[];
  options?: string[];
}

/** One line of the pod's hosts file: an address and its names (`--add-host NAME:IP`, the pod's own hostname). */
export interface HostsEntry {
  ip: string;
  names: string[];
}

/** The guest's network (see ConfigureNetwork in agent.proto): links by MAC, then routes, then neighbours. */
export interface NetworkConfig {
  interfaces: { mac: string; name?: string; mtu?: number; addresses?: string[] }[];
  routes?: {
    destination: string;
    gateway?: string;
    interfaceMac: string;
    source?: string;
    scope?: 'universe' | 'link' | 'host';
    onlink?: boolean;
    metric?: number;
  }[];
  neighbors?: { ip: string; mac: string; interfaceMac: string; permanent?: boolean }[];
}

const ROUTE_SCOPES = { universe: 'ROUTE_SCOPE_UNIVERSE', link: 'ROUTE_SCOPE_LINK', host: 'ROUTE_SCOPE_HOST' } as const;

type UnaryMethod =
  | 'Health' | 'GuestDetails' | 'CreateContainer' | 'StartContainer' | 'ExecProcess' | 'SignalProcess' | 'WaitProcess'
  | 'CloseStdin' | 'ResizeTerminal' | 'ListProcesses' | 'Stats' | 'UpdateResources' | 'PauseContainer'
  | 'ResumeContainer' | 'RemoveContainer' | 'MountShare' | 'CreateBusyboxRootfs' | 'SetHostname' | 'SetDns' | 'SetSysctls' | 'SetHosts'
  | 'ConfigureNetwork' | 'Shutdown';
type RequestOf<M extends UnaryMethod> = Parameters<AgentDefinition[M]['requestSerialize']>[0];
type ResponseOf<M extends UnaryMethod> = ReturnType<AgentDefinition[M]['responseDeserialize']>;
type UnaryFn = (req: unknown, options: grpc.CallOptions, cb: grpc.requestCallback<unknown>) => grpc.ClientUnaryCall;

export interface AgentClientOptions {
  /** Default per-call deadline for unary calls (not for waits or streams). */
  callTimeoutMs?: number;
}

export class AgentClient {
  private readonly client: GeneratedAgentClient;
  private readonly callTimeoutMs: number;

  /** `address` is a unix socket path, or a gRPC target such as `unix:/run/vrun/pod/agent.sock`. */
  constructor(address: string, opts: AgentClientOptions = {}) {
    const { service } = loadAgentProto();
    const Ctor = grpc.makeClientConstructor(service, 'Agent');
    const target = address.startsWith('unix:') ? address : `unix:${address}`;
    this.client = new Ctor(target, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      // The guest may be booting, or the virtio port may be between host connections: retry soon.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
      'grpc.enable_retries': 0,
      // Output streams are bulk data: a 64 KiB HTTP/2 window would stall them on every round trip.
      'grpc-node.flow_control_window': 8 * 1024 * 1024,
    }) as unknown as GeneratedAgentClient;
    this.callTimeoutMs = opts.callTimeoutMs ?? 60_000;
  }

  /**
   * Connects and proves the agent answers (Health), retrying with a fresh connection on failure until
   * `timeoutMs`. Use it for a first connection and for reconnects: bytes the guest wrote while no host
   * was connected can reach the next connection and break its first HTTP/2 session; the next one is clean.
   */
  static async connect(address: string, opts: AgentClientOptions & { timeoutMs?: number } = {}): Promise<AgentClient> {
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    let last: unknown;
    while (Date.now() < deadline) {
      const client = new AgentClient(address, opts);
      try {
        await client.waitForReady(Math.max(1, deadline - Date.now()));
        if (await client.unary('Health', {}, Math.min(10_000, Math.max(1, deadline - Date.now()))).then((r) => r.serving)) return client;
        last = new VrunError('the agent reported it is not serving');
      } catch (err) {
        last = err;
      }
      client.close();
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new VrunError(`could not reach the guest agent at ${address}: ${last instanceof Error ? last.message : String(last)}`, { cause: last, kind: 'unavailable' });
  }

  /** Resolves once the transport to the agent is up (the agent answered the HTTP/2 handshake). */
  waitForReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.waitForReady(Date.now() + timeoutMs, (err) => {
        if (err) reject(new VrunError(`the guest agent did not answer within ${timeoutMs} ms: ${err.message}`, { cause: err, kind: 'deadline' }));
        else resolve();
      });
    });
  }

  close(): void {
    this.client.close();
  }

  private unary<M extends UnaryMethod>(method: M, req: RequestOf<M>, timeoutMs: number | null = this.callTimeoutMs): Promise<ResponseOf<M>> {
    const options: grpc.CallOptions = timeoutMs === null ? {} : { deadline: Date.now() + timeoutMs };
    // The generated client's overloads defeat inference; the method table gives the precise types instead.
    const fn = (this.client as unknown as Record<M, UnaryFn>)[method];
    return new Promise((resolve, reject) => {
      fn.call(this.client, req, options, (err, res) => {
        if (err) reject(toAgentError(method, err));
        else if (res === undefined) reject(new AgentError(method, grpc.status.INTERNAL, 'empty reply'));
        else resolve(res as ResponseOf<M>);
      });
    });
  }

  async health(): Promise<boolean> {
    return (await this.unary('Health', {})).serving;
  }

  async guestDetails(): Promise<GuestDetailsResponse__Output> {
    return this.unary('GuestDetails', {});
  }

  /** Writes the bundle and runs `crun create` (and starts it with `start`); returns the init process's pid in the guest. */
  async createContainer(o: CreateContainerOptions): Promise<number> {
    const res = await this.unary('CreateContainer', {
      containerId: o.containerId,
      ociSpecJson: JSON.stringify(o.spec),
      rootfs: o.rootfs,
      stdio: STDIO_WIRE[o.stdio ?? 'pipes'],
      // Sent only when asked for: an agent older than the field refuses it as unknown.
      ...(o.start ? { start: true } : {}),
    });
    return validPid('CreateContainer', res.pid);
  }

  async startContainer(containerId: string): Promise<void> {
    await this.unary('StartContainer', { containerId });
  }

  /** Starts another process in a running container; returns its pid in the guest. */
  async execProcess(o: ExecOptions): Promise<number> {
    const res = await this.unary('ExecProcess', {
      containerId: o.containerId,
      execId: o.execId,
      processJson: JSON.stringify(o.process),
      stdio: STDIO_WIRE[o.stdio ?? 'pipes'],
      userSpec: o.userSpec ?? '',
    });
    return validPid('ExecProcess', res.pid);
  }

  /** `signal` is a number or a name ("SIGTERM", "KILL"); `all` signals every process of the container. */
  async signalProcess(ref: ProcessRef, signal: number | string, opts: { all?: boolean } = {}): Promise<void> {
    await this.unary('SignalProcess', {
      containerId: ref.containerId,
      execId: ref.execId ?? '',
      signal: String(signal),
      all: opts.all ?? false,
    });
  }

  /** Resolves when the process has exited (no deadline unless `timeoutMs`). */
  async waitProcess(ref: ProcessRef, timeoutMs: number | null = null): Promise<WaitResult> {
    const res = await this.unary('WaitProcess', { containerId: ref.containerId, execId: ref.execId ?? '' }, timeoutMs);
    return validWait(res);
  }

  /**
   * The process's stdout or stderr as a byte stream ending at EOF. Reading slowly pauses the gRPC stream,
   * whose HTTP/2 flow control pauses the agent's reads of the process's pipe.
   */
  readOutput(ref: ProcessRef, which: 'stdout' | 'stderr'): Readable {
    const method = which === 'stdout' ? 'ReadStdout' : 'ReadStderr';
    const req = { containerId: ref.containerId, execId: ref.execId ?? '' };
    const call: grpc.ClientReadableStream<OutputChunk__Output> = which === 'stdout' ? this.client.readStdout(req) : this.client.readStderr(req);
    const bytes = new Transform({
      writableObjectMode: true,
      readableObjectMode: false,
      transform(chunk: OutputChunk__Output, _enc, cb) {
        cb(null, chunk.data);
      },
      destroy(err, cb) {
        call.cancel();
        cb(err);
      },
    });
    call.on('error', (err) => {
      if (isServiceError(err) && err.code === grpc.status.CANCELLED && bytes.destroyed) return;
      bytes.destroy(toAgentError(method, err));
    });
    call.pipe(bytes);
    return bytes;
  }

  /**
   * A writable byte stream into the process's stdin. Ending it closes the process's stdin (EOF) unless
   * `closeOnEnd` is false. `written` resolves with the byte count the agent delivered.
   */
  writeStdin(ref: ProcessRef, opts: { closeOnEnd?: boolean } = {}): Writable & { written: Promise<number> } {
    const closeOnEnd = opts.closeOnEnd ?? true;
    let resolveWritten: (n: number) => void = () => undefined;
    let rejectWritten: (e: unknown) => void = () => undefined;
    const written = new Promise<number>((res, rej) => {
      resolveWritten = res;
      rejectWritten = rej;
    });
    // Callers who only use the stream's events must not see an unhandled rejection.
    written.catch(() => undefined);
    const call = this.client.writeStdin((err: grpc.ServiceError | null, res?: WriteStdinResponse__Output) => {
      if (err) {
        const e = toAgentError('WriteStdin', err);
        rejectWritten(e);
        if (!stream.destroyed) stream.destroy(e);
      } else resolveWritten(res?.bytesWritten ?? 0);
    });
    let first = true;
    const message = (data: Buffer, close: boolean): WriteStdinRequest => {
      const ids = first ? { containerId: ref.containerId, execId: ref.execId ?? '' } : {};
      first = false;
      return { ...ids, data, closeStdin: close };
    };
    const send = (msg: WriteStdinRequest, cb: (err?: Error | null) => void): void => {
      if (call.write(msg)) cb();
      else call.once('drain', () => cb());
    };
    const stream = new Writable({
      highWaterMark: STDIO_CHUNK_BYTES,
      write(chunk: Buffer, _enc, cb) {
        let offset = 0;
        const next = (err?: Error | null): void => {
          if (err || offset >= chunk.length) return cb(err);
          const piece = chunk.subarray(offset, offset + STDIO_CHUNK_BYTES);
          offset += piece.length;
          send(message(piece, false), next);
        };
        next();
      },
      final(cb) {
        const finish = () => {
          call.end();
          written.then(() => cb(), cb);
        };
        if (closeOnEnd || first) send(message(Buffer.alloc(0), closeOnEnd), finish);
        else finish();
      },
      destroy(err, cb) {
        if (err) call.cancel();
        cb(err);
      },
    });
    return Object.assign(stream, { written });
  }

  async closeStdin(ref: ProcessRef): Promise<void> {
    await this.unary('CloseStdin', { containerId: ref.containerId, execId: ref.execId ?? '' });
  }

  async resizeTerminal(ref: ProcessRef, size: { rows: number; cols: number }): Promise<void> {
    await this.unary('ResizeTerminal', { containerId: ref.containerId, execId: ref.execId ?? '', rows: size.rows, cols: size.cols });
  }

  async listProcesses(containerId: string): Promise<ProcessInfo__Output[]> {
    const res = await this.unary('ListProcesses', { containerId });
    for (const p of res.processes) validPid('ListProcesses', p.pid);
    return res.processes;
  }

  async stats(containerId: string): Promise<ContainerStats> {
    return validStats(await this.unary('Stats', { containerId }));
  }

  /** Applies OCI LinuxResources (e.g. `{ memory: { limit: 268435456 }, pids: { limit: 64 } }`). */
  async updateResources(containerId: string, resources: Record<string, unknown>): Promise<void> {
    await this.unary('UpdateResources', { containerId, resourcesJson: JSON.stringify(resources) });
  }

  async pauseContainer(containerId: string): Promise<void> {
    await this.unary('PauseContainer', { containerId });
  }

  async resumeContainer(containerId: string): Promise<void> {
    await this.unary('ResumeContainer', { containerId });
  }

  async removeContainer(containerId: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.unary('RemoveContainer', { containerId, force: opts.force ?? false });
  }

  /** OOM kills in any container as they happen (object-mode stream of OomEvent); destroy it to stop. */
  oomEvents(): Readable {
    const call = this.client.oomEvents({});
    const events = new Transform({
      objectMode: true,
      transform(ev: OomEvent__Output, _enc, cb) {
        try {
          checkInt('OOM event count', ev.oomKillCount, 0, Number.MAX_SAFE_INTEGER);
          if (ev.containerId.length > 64) throw new VrunError('agent sent an OOM event with an overlong container id');
          cb(null, ev);
        } catch (err) {
          cb(err as Error);
        }
      },
      destroy(err, cb) {
        call.cancel();
        cb(err);
      },
    });
    call.on('error', (err) => {
      if (isServiceError(err) && err.code === grpc.status.CANCELLED && events.destroyed) return;
      events.destroy(toAgentError('OomEvents', err));
    });
    call.pipe(events);
    return events;
  }

  /** Mounts the virtio-fs share `tag` at `path` (relative to the agent's share dir); returns the guest path. */
  async mountShare(o: { tag: string; path: string; readonly?: boolean }): Promise<string> {
    return (await this.unary('MountShare', { tag: o.tag, path: o.path, readonly: o.readonly ?? false })).mountPath;
  }

  /** Builds a busybox rootfs at `path` (relative to the agent's share dir); returns its guest path. */
  async createBusyboxRootfs(path: string): Promise<string> {
    return (await this.unary('CreateBusyboxRootfs', { path })).rootfs;
  }

  async setHostname(hostname: string): Promise<void> {
    await this.unary('SetHostname', { hostname });
  }

  async setDns(dns: DnsConfig): Promise<void> {
    await this.unary('SetDns', { nameservers: dns.nameservers, searches: dns.searches ?? [], options: dns.options ?? [] });
  }

  /** Kernel parameters for the whole guest (every container of the pod shares its namespaces). */
  async setSysctls(sysctls: Record<string, string>): Promise<void> {
    await this.unary('SetSysctls', { sysctls: Object.entries(sysctls).map(([key, value]) => ({ key, value })) });
  }

  /** Replaces the pod's hosts file: the localhost lines, then `entries` in order (include the pod's own hostname). */
  async setHosts(entries: HostsEntry[]): Promise<void> {
    await this.unary('SetHosts', { entries });
  }

  /** Configures the guest's links, routes and neighbours; returns each interface's name in the guest, by MAC. */
  async configureNetwork(net: NetworkConfig): Promise<{ mac: string; name: string }[]> {
    const reply = await this.unary('ConfigureNetwork', {
      interfaces: net.interfaces.map((i) => ({ mac: i.mac, name: i.name ?? '', mtu: i.mtu ?? 0, addresses: i.addresses ?? [] })),
      routes: (net.routes ?? []).map((r) => ({
        destination: r.destination,
        gateway: r.gateway ?? '',
        interfaceMac: r.interfaceMac,
        source: r.source ?? '',
        scope: r.scope ? ROUTE_SCOPES[r.scope] : 'ROUTE_SCOPE_UNSPECIFIED',
        onlink: r.onlink ?? false,
        metric: r.metric ?? 0,
      })),
      neighbors: (net.neighbors ?? []).map((n) => ({ ip: n.ip, mac: n.mac, interfaceMac: n.interfaceMac, permanent: n.permanent ?? true })),
    });
    // The names come from the guest: bounded before anyone logs or uses them.
    if (reply.interfaces.length > net.interfaces.length) throw new AgentError('ConfigureNetwork', grpc.status.INTERNAL, `the guest named ${reply.interfaces.length} interfaces for ${net.interfaces.length} asked`);
    return reply.interfaces.map((i) => ({ mac: i.mac.slice(0, 17), name: i.name.slice(0, 15) }));
  }

  /** Asks the agent to kill every container and exit; the guest then powers off. */
  async shutdown(): Promise<void> {
    await this.unary('Shutdown', {});
  }

  /**
   * A byte stream to `address:port` on the guest's loopback (CRI port-forward); without `address`, to
   * localhost:port as containerd dials it (127.0.0.1, then ::1 when nothing is there). Ending it half-closes the guest
   * connection; it ends when the guest connection closed, and fails (an AgentError) when the guest could not
   * dial. Reading slowly pauses the call, whose HTTP/2 flow control pauses the guest's reads.
   */
  portForward(port: number, address: '' | '127.0.0.1' | '::1' = ''): Duplex {
    const call: grpc.ClientDuplexStream<{ port?: number; address?: string; data?: Buffer }, PortForwardResponse__Output> = this.client.portForward();
    const send = (data: Buffer, cb: (err?: Error | null) => void): void => {
      for (let off = 0; off < data.length; off += STDIO_CHUNK_BYTES) {
        const last = off + STDIO_CHUNK_BYTES >= data.length;
        const ok = call.write({ data: data.subarray(off, off + STDIO_CHUNK_BYTES) });
        if (last) {
          if (ok) cb();
          else call.once('drain', () => cb());
        }
      }
    };
    const stream = new Duplex({
      highWaterMark: STDIO_CHUNK_BYTES,
      read() {
        call.resume();
      },
      write(chunk: Buffer, _enc, cb) {
        if (chunk.length === 0) cb();
        else send(chunk, cb);
      },
      final(cb) {
        call.end();
        cb();
      },
      destroy(err, cb) {
        call.cancel();
        cb(err);
      },
    });
    // The guest dials on the first message, so a server that speaks first (SSH, SMTP) is heard at once.
    call.write({ port, address });
    call.on('data', (m: PortForwardResponse__Output) => {
      // The reply size is bounded by the gRPC message limit; the pause bounds how many wait here.
      if (!stream.push(m.data)) call.pause();
    });
    call.on('end', () => stream.push(null));
    call.on('error', (err) => {
      if (isServiceError(err) && err.code === grpc.status.CANCELLED && stream.destroyed) return;
      stream.destroy(toAgentError('PortForward', err));
    });
    return stream;
  }
}
