/**
 * The gRPC face of the agent: every method of vrun.agent.v1.Agent, with request checks in front. Handlers
 * never throw into grpc-js: every failure becomes a status with a message naming what was wrong, and the
 * agent keeps serving.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import { VrunError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { AgentConfig } from './config.js';
import type { Containers } from './containers.js';
import type { AgentHandlers } from '../protocol/generated/vrun/agent/v1/Agent.js';
import type { WriteStdinRequest__Output } from '../protocol/generated/vrun/agent/v1/WriteStdinRequest.js';
import { createBusyboxRootfs, mountShare, setDns, setHostname, setHosts, setSysctls } from './guest-setup.js';
import { configureNetwork } from './network.js';
import { runTracked } from './own-children.js';
import { PortForwards } from './port-forward.js';
import type { ProcessIo } from './process-io.js';
import { sendWireChunksUncopied } from './framed-output-send.js';
import { isWireChunk, type WireChunk } from './output-chunk-wire.js';
import { stdioKind } from '../protocol/process.js';
import { loadAgentProto, MAX_MESSAGE_BYTES } from '../protocol/proto.js';
import { invalid, toStatus } from '../protocol/rpc-error.js';
import { findUnknownField } from '../protocol/strict-decode.js';

export const AGENT_VERSION = '0.1.0';

export interface AgentServices {
  cfg: AgentConfig;
  containers: Containers;
  log: Logger;
  /** Called after Shutdown answered: the process ends the agent. */
  onShutdown: () => void;
}

async function guestDetails(cfg: AgentConfig) {
  const cg = cfg.cgroupRoot;
  const mode = existsSync(path.join(cg, 'cgroup.controllers')) ? 'v2' : existsSync(path.join(cg, 'unified')) ? 'hybrid' : 'v1';
  const crunVersion = cfg.crunVersion ?? (await runTracked(cfg.crun, ['--version']).then((r) => r.stdout.split('\n')[0] ?? '', () => ''));
  const controllers = await readFile(path.join(cg, 'cgroup.subtree_control'), 'utf8').catch(() => '');
  return {
    kernelRelease: os.release(),
    agentVersion: AGENT_VERSION,
    cgroupMode: mode,
    memTotalBytes: os.totalmem(),
    cpus: os.cpus().length,
    crunVersion,
    nodeVersion: process.version,
    cgroupControllers: controllers.trim().split(/\s+/).filter(Boolean),
  };
}

export function createAgentServer(s: AgentServices): grpc.Server {
  const { service, requestTypes, descriptors } = loadAgentProto();
  // Requests carrying fields the .proto lacks are marked while decoding and refused by the handler, which
  // can name the field (a throwing deserializer would only give the caller a bare INTERNAL).
  const rejected = new WeakMap<object, string>();
  const strict: Record<string, MethodDefinition<object, object, object, object>> = {};
  for (const [name, def] of Object.entries(service as unknown as Record<string, MethodDefinition<object, object, object, object>>)) {
    const typeName = requestTypes[name] as string;
    const outputStream = name === 'ReadStdout' || name === 'ReadStderr';
    strict[name] = {
      ...def,
      // Output chunks arrive already encoded (see output-chunk-wire.ts).
      responseSerialize: outputStream ? (msg: object) => (isWireChunk(msg) ? msg.wire : def.responseSerialize(msg)) : def.responseSerialize,
      requestDeserialize: (buf: Buffer) => {
        const problem = findUnknownField(buf, typeName, descriptors);
        const msg = def.requestDeserialize(buf);
        if (problem) rejected.set(msg, `${name}: ${problem}`);
        return msg;
      },
    };
  }
  const refusal = (req: object): VrunError | null => {
    const problem = rejected.get(req);
    return problem ? invalid(problem) : null;
  };

  function unary<Req extends object, Res>(name: string, fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, cb) => {
      const bad = refusal(call.request);
      if (bad) return cb(toStatus(bad));
      fn(call.request).then(
        (res) => cb(null, res),
        (err: unknown) => {
          s.log.debug({ method: name, err: errorMessage(err) }, 'request failed');
          cb(toStatus(err));
        },
      );
    };
  }

  let warnedCopying = false;
  function output(which: 'stdout' | 'stderr'): grpc.handleServerStreamingCall<{ containerId: string; execId: string }, WireChunk> {
    return (call) => {
      try {
        const bad = refusal(call.request);
        if (bad) throw bad;
        const io = s.containers.io(call.request.containerId, call.request.execId);
        if (!sendWireChunksUncopied(call) && !warnedCopying) {
          warnedCopying = true;
          s.log.warn('grpc-js does not frame output chunks as expected: output is sent through its copying path');
        }
        io.attachOutput(which, call);
      } catch (err) {
        call.emit('error', toStatus(err));
      }
    };
  }

  const writeStdin: grpc.handleClientStreamingCall<WriteStdinRequest__Output, { bytesWritten: number }> = (call, cb) => {
    let io: ProcessIo | null = null;
    let total = 0;
    let done = false;
    let chain = Promise.resolve();
    const finish = (err: unknown) => {
      if (done) return;
      done = true;
      if (err) {
        cb(toStatus(err));
        call.destroy();
      } else cb(null, { bytesWritten: total });
    };
    call.on('data', (msg: WriteStdinRequest__Output) => {
      call.pause();
      chain = chain.then(async () => {
        if (done) return;
        try {
          const bad = refusal(msg);
          if (bad) throw bad;
          if (!io) io = s.containers.io(msg.containerId, msg.execId);
          if (msg.data.length > 0) await io.writeStdin(msg.data);
          total += msg.data.length;
          if (msg.closeStdin) await io.closeStdin();
          call.resume();
        } catch (err) {
          finish(err);
        }
      });
    });
    call.on('end', () => void chain.then(() => finish(null)));
    call.on('error', () => finish(new VrunError('stdin stream broke', { kind: 'canceled' })));
  };

  const portForwards = new PortForwards(s.log, refusal);
  const handlers: AgentHandlers = {
    Health: unary('Health', async () => ({ serving: true })),
    GuestDetails: unary('GuestDetails', () => guestDetails(s.cfg)),
    CreateContainer: unary('CreateContainer', async (r) => ({
      pid: await s.containers.create({ containerId: r.containerId, ociSpecJson: r.ociSpecJson, rootfs: r.rootfs, stdio: stdioKind(r.stdio), start: r.start }),
    })),
    StartContainer: unary('StartContainer', async (r) => {
      await s.containers.start(r.containerId);
      return {};
    }),
    ExecProcess: unary('ExecProcess', async (r) => ({
      pid: await s.containers.exec({ containerId: r.containerId, execId: r.execId, processJson: r.processJson, stdio: stdioKind(r.stdio), userSpec: r.userSpec }),
    })),
    SignalProcess: unary('SignalProcess', async (r) => {
      await s.containers.signal(r);
      return {};
    }),
    WaitProcess: unary('WaitProcess', (r) => s.containers.wait(r.containerId, r.execId)),
    ReadStdout: output('stdout'),
    ReadStderr: output('stderr'),
    WriteStdin: writeStdin,
    CloseStdin: unary('CloseStdin', async (r) => {
      await s.containers.io(r.containerId, r.execId).closeStdin();
      return {};
    }),
    ResizeTerminal: unary('ResizeTerminal', async (r) => {
      if (r.rows < 1 || r.cols < 1 || r.rows > 4096 || r.cols > 4096) throw invalid(`terminal size ${r.rows}x${r.cols} is out of range (1..4096)`);
      s.containers.io(r.containerId, r.execId).resize(r.rows, r.cols);
      return {};
    }),
    ListProcesses: unary('ListProcesses', async (r) => ({ processes: await s.containers.pids(r.containerId) })),
    Stats: unary('Stats', (r) => s.containers.stats(r.containerId)),
    UpdateResources: unary('UpdateResources', async (r) => {
      await s.containers.update(r.containerId, r.resourcesJson);
      return {};
    }),
    PauseContainer: unary('PauseContainer', async (r) => {
      await s.containers.pause(r.containerId);
      return {};
    }),
    ResumeContainer: unary('ResumeContainer', async (r) => {
      await s.containers.resume(r.containerId);
      return {};
    }),
    RemoveContainer: unary('RemoveContainer', async (r) => {
      await s.containers.remove(r.containerId, r.force);
      return {};
    }),
    OomEvents: (call) => {
      const send = (ev: { containerId: string; oomKillCount: number }) => call.write(ev);
      s.containers.on('oom', send);
      const stop = () => s.containers.removeListener('oom', send);
      call.once('cancelled', stop);
      call.once('close', stop);
    },
    MountShare: unary('MountShare', async (r) => ({ mountPath: await mountShare(s.cfg, r) })),
    CreateBusyboxRootfs: unary('CreateBusyboxRootfs', async (r) => ({ rootfs: await createBusyboxRootfs(s.cfg, r.path) })),
    SetHostname: unary('SetHostname', async (r) => {
      await setHostname(s.cfg, r.hostname);
      return {};
    }),
    SetDns: unary('SetDns', async (r) => {
      await setDns(s.cfg, r);
      return {};
    }),
    SetSysctls: unary('SetSysctls', async (r) => {
      await setSysctls(s.cfg, r.sysctls);
      return {};
    }),
    SetHosts: unary('SetHosts', async (r) => {
      await setHosts(s.cfg, r.entries);
      return {};
    }),
    ConfigureNetwork: unary('ConfigureNetwork', async (r) => ({ interfaces: await configureNetwork(s.cfg, r) })),
    PortForward: portForwards.handle,
    Shutdown: unary('Shutdown', async () => {
      await s.containers.removeAll();
      setTimeout(s.onShutdown, 50);
      return {};
    }),
  };

  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  });
  server.addService(strict as grpc.ServiceDefinition, handlers);
  return server;
}
