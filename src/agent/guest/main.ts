/**
 * Guest agent entry point, bundled to dist/agent/agent.cjs, which exports main. `bin/vrun-agent.js` loads the
 * bundle with a code cache and calls main: the guest init runs it as `node /opt/vrun/vrun-agent.js` with
 * VRUN_AGENT_PORT=vrun.agent; on the host, tests run it with --socket/--state-dir/--share-dir. Prints
 * "vrun-agent: serving on <socket> ... (code cache: <state>)" once it accepts calls.
 */
import { mkdir, rm } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { errorMessage } from '../../common/errors.js';
import { rootLogger } from '../../common/log.js';
import { parseAgentConfig } from './config.js';
import { Containers } from './containers.js';
import { findPortDevice, PortBridge } from './port-bridge.js';
import { Reaper } from './reaper.js';
import { createAgentServer } from './server.js';

/** What the launcher knows of the agent's own start: whether V8 took the bundle's code cache. */
export interface AgentStartup {
  codeCache?: string;
}

/** Runs the agent until it is shut down; a failure to start ends the process with status 1. */
export function main(argv: string[], startup: AgentStartup = {}): Promise<void> {
  return serve(argv, startup).catch((err: unknown) => {
    process.stderr.write(`vrun-agent: ${errorMessage(err)}\n`);
    process.exit(1);
  });
}

async function serve(argv: string[], startup: AgentStartup): Promise<void> {
  const cfg = parseAgentConfig(argv, process.env);
  const log = rootLogger().child({ component: 'agent' });
  await mkdir(cfg.stateDir, { recursive: true, mode: 0o700 });
  await mkdir(cfg.shareDir, { recursive: true });
  await rm(cfg.socketPath, { force: true });

  const reaper = new Reaper(log);
  const containers = new Containers(cfg, reaper, log);
  await containers.init();
  let bridge: PortBridge | null = null;
  let exiting = false;
  // Graceful: in-flight replies (Shutdown's own) are finished and carried through the port before exit.
  const exit = (code: number) => {
    if (exiting) return;
    exiting = true;
    const force = setTimeout(() => server.forceShutdown(), 2000);
    server.tryShutdown(() => {
      clearTimeout(force);
      void (bridge?.stop() ?? Promise.resolve()).finally(() => process.exit(code));
    });
  };
  const server = createAgentServer({ cfg, containers, log, onShutdown: () => exit(0) });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix:${cfg.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  if (cfg.portName) {
    bridge = new PortBridge(await findPortDevice(cfg.portName), cfg.socketPath, log);
    await bridge.start();
  }
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      void containers.removeAll().finally(() => exit(0));
    });
  }
  process.stdout.write(`vrun-agent: serving on ${cfg.socketPath}${cfg.portName ? ` and port ${cfg.portName}` : ''} (code cache: ${startup.codeCache ?? 'none'})\n`);
}
