/**
 * A real containerd (Debian's 1.6 at /usr/bin/containerd) started for a test with its own root, state,
 * sockets and config, and with the plugins a ttrpc test does not need switched off (CRI, the /opt
 * installer, snapshotters that probe the host). Must run as root, which these tests do.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface Containerd {
  dir: string;
  /** The gRPC socket (what `ctr --address` takes). */
  address: string;
  /** The ttrpc socket shims publish events to: `<address>.ttrpc`. */
  ttrpcAddress: string;
  log(): string;
  /** Stops containerd (SIGTERM) and starts it again on the same root, state and sockets; shims keep running. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const DISABLED_PLUGINS = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.internal.v1.opt',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.tracing.processor.v1.otlp',
  'io.containerd.internal.v1.tracing',
];

function canConnect(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ path: p }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startContainerd(opts: { extraPath?: string } = {}): Promise<Containerd> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-ctd-'));
  const address = path.join(dir, 'c.sock');
  const config = [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    `disabled_plugins = ${JSON.stringify(DISABLED_PLUGINS)}`,
    '[grpc]',
    `  address = "${address}"`,
    '[debug]',
    '  level = "debug"',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'config.toml'), config);
  const logFile = path.join(dir, 'containerd.log');
  const env = { ...process.env, PATH: opts.extraPath ? `${opts.extraPath}:${process.env.PATH ?? ''}` : process.env.PATH };
  const log = (): string => spawnError + fs.readFileSync(logFile, 'utf8');
  const ttrpcAddress = `${address}.ttrpc`;
  let child: ChildProcess;
  let exited = false;
  let spawnError = '';
  let exitPromise: Promise<void> = Promise.resolve();

  const launch = async (): Promise<void> => {
    const out = fs.openSync(logFile, 'a');
    child = spawn('/usr/bin/containerd', ['--config', path.join(dir, 'config.toml')], { stdio: ['ignore', out, out], env });
    fs.closeSync(out);
    exited = false;
    exitPromise = new Promise<void>((resolve) => {
      child.once('exit', () => ((exited = true), resolve()));
      child.once('error', (err) => ((exited = true), (spawnError = `${err.message} (Debian package "containerd")\n`), resolve()));
    });
    const deadline = Date.now() + 20_000;
    while (!(await canConnect(ttrpcAddress)) || !(await canConnect(address))) {
      if (exited || Date.now() > deadline) {
        const text = log();
        fs.rmSync(dir, { recursive: true, force: true });
        throw new Error(`containerd did not start:\n${text.slice(-3000)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const halt = async (): Promise<void> => {
    if (exited) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exitPromise;
    clearTimeout(killer);
  };
  await launch();

  return {
    dir,
    address,
    ttrpcAddress,
    log,
    async restart() {
      await halt();
      await launch();
    },
    async stop() {
      await halt();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
