/**
 * Runs the bundled agent (bin/vrun-agent.js on dist/agent/agent.cjs, the same files the guest gets) as a host process, for tests
 * and benchmarks:
 * in a private mount + UTS namespace with cgroup2 mounted on /sys/fs/cgroup, because crun refuses this
 * host's hybrid cgroups. Talks to it over a unix socket with the real host client.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { OciSpec } from '../../common/oci-spec.js';
import { AgentClient } from './client.js';
import { nativeAddonPath } from '../../common/native.js';
import { projectRoot } from '../../common/paths.js';

export interface HostAgent {
  client: AgentClient;
  dir: string;
  socketPath: string;
  shareDir: string;
  etcDir: string;
  procSysDir: string;
  /** The agent process (a new one after restart()). */
  child: ChildProcess;
  /** Everything the agent printed (stdout + stderr), across restarts. */
  output(): string;
  /**
   * Kills the agent without letting it clean up (SIGKILL, like a crash) and starts a new one on the same
   * directories and socket; `client` stays the same object and reconnects.
   */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface HostAgentOptions {
  /**
   * A command the agent runs under, its arguments before the agent's own (`['ip', 'netns', 'exec', 'ns1']`):
   * network tests put the agent in a namespace of their own, never the host's network.
   */
  wrapper?: string[];
}

export async function startHostAgent(opts: HostAgentOptions = {}): Promise<HostAgent> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-agent-test-'));
  const socketPath = path.join(dir, 'agent.sock');
  const shareDir = path.join(dir, 'share');
  const etcDir = path.join(dir, 'etc');
  // Host tests never write the host's /proc/sys: SetSysctls goes to a directory shaped like it.
  const procSysDir = path.join(dir, 'proc-sys');
  const agent = path.join(projectRoot(), 'bin', 'vrun-agent.js');
  const script = [
    'set -e',
    'mount -t cgroup2 none /sys/fs/cgroup',
    `mkdir -p ${etcDir} ${procSysDir}/kernel`,
    `echo 0 > ${procSysDir}/kernel/shm_rmid_forced`,
    `exec "${process.execPath}" ${agent} --socket ${socketPath} --state-dir ${path.join(dir, 'state')} --share-dir ${shareDir} --etc-dir ${etcDir} --proc-sys-dir ${procSysDir}`,
  ].join('\n');
  let out = '';
  const launch = async (): Promise<ChildProcess> => {
    const command = [...(opts.wrapper ?? []), 'unshare', '-m', '-u', '--propagation', 'private', 'sh', '-c', script];
    const child = spawn(command[0] as string, command.slice(1), {
      env: { ...process.env, VRUN_NATIVE_ADDON: nativeAddonPath(), VRUN_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const from = out.length;
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent did not start: ${out.slice(from)}`)), 20_000);
      const check = () => {
        if (out.slice(from).includes('vrun-agent: serving on')) {
          clearTimeout(timer);
          child.stdout?.removeListener('data', check);
          resolve();
        }
      };
      child.stdout?.on('data', check);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`agent exited with ${code}: ${out.slice(from)}`));
      });
    });
    return child;
  };
  const stopChild = async (child: ChildProcess, signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  };
  const child = await launch();
  const client = new AgentClient(socketPath);
  await client.waitForReady(10_000);
  const host: HostAgent = {
    client,
    dir,
    socketPath,
    shareDir,
    etcDir,
    procSysDir,
    child,
    output: () => out,
    async restart() {
      await stopChild(host.child, 'SIGKILL');
      host.child = await launch();
    },
    async stop() {
      client.close();
      await stopChild(host.child, 'SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
  return host;
}

/** A minimal OCI spec for busybox: args, and the namespaces crun needs. */
export function busyboxSpec(args: string[], extra: { env?: string[]; cwd?: string; user?: { uid: number; gid: number }; readonly?: boolean; linux?: Record<string, unknown> } = {}): OciSpec {
  return {
    ociVersion: '1.0.2',
    process: {
      args,
      env: extra.env ?? ['PATH=/bin'],
      cwd: extra.cwd ?? '/',
      user: extra.user ?? { uid: 0, gid: 0 },
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: extra.readonly ?? false },
    hostname: 'ctr',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'mount' }, { type: 'ipc' }, { type: 'uts' }],
      ...extra.linux,
    },
  };
}

/** Reads a byte stream to its end. */
export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
