/**
 * A real containerd 1.6 with its CRI plugin on (own root, state, socket and config), the runtime handler
 * `vrun` (io.containerd.vrun.v2), a local pause image, a bridge CNI config from Debian's
 * containernetworking-plugins, and a CRI v1 gRPC client. Images come from `ctr images import` of archives
 * the test builds: containerd never reaches for a registry.
 *
 * Network safety: containerd runs in a network namespace the fixture made (nsenter --net, which keeps the host's
 * mount namespace, so the shim's mounts and containerd's /run/netns files stay visible), so its CNI bridge, the
 * bridge plugin's iptables rules, every pod's host-side veth and its streaming server on 127.0.0.1 all live
 * there. A client of the streaming server connects from inside it (`connect`).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { projectRoot } from '../../src/common/paths.js';
import { createNetns, deleteNetns } from '../../src/network/netns.js';
import { connectInNetns } from '../../src/shim/netns-socket.js';
import { IMAGE, buildBusyboxArchive } from './shim-fixture.js';

const run = promisify(execFile);
export const PAUSE_IMAGE = 'docker.io/library/vrun-pause:1';
export { IMAGE };

type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

export interface CriEnv {
  dir: string;
  logDir: string;
  /** The network namespace containerd (and so its CNI bridge and streaming server) runs in. */
  netns: string;
  /** The bridge the CNI config names, inside `netns`. */
  bridge: string;
  /** A TCP connection to host:port made from inside `netns` (the streaming server's URLs name 127.0.0.1). */
  connect(host: string, port: number): net.Socket;
  /** Imports an OCI archive into containerd's CRI namespace. */
  importImage(archive: string): Promise<unknown>;
  /** Calls a RuntimeService method; resolves with the decoded response object. */
  call<T = Record<string, unknown>>(method: string, req: unknown, timeoutMs?: number): Promise<T>;
  log(): string;
  stop(): Promise<void>;
}

function canConnect(p: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection({ path: p }, () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startCriEnv(): Promise<CriEnv> {
  const netnsId = `test-cri-${process.pid}`;
  const netns = await createNetns(netnsId);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-cri-'));
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  fs.symlinkSync(path.join(projectRoot(), 'bin', 'containerd-shim-vrun-v2.js'), path.join(bin, 'containerd-shim-vrun-v2'));
  // This host refuses negative oom_score_adj writes even to root, and CRI gives the pause container -998,
  // so runc (the baseline handler) runs through a wrapper that drops a negative oomScoreAdj from the bundle.
  const runcWrapper = path.join(bin, 'runc-no-negative-oom');
  fs.writeFileSync(
    runcWrapper,
    [
      '#!/bin/sh',
      'prev=""',
      'for a; do',
      '  if [ "$prev" = "--bundle" ] || [ "$prev" = "-b" ]; then',
      '    sed -i -e \'s/"oomScoreAdj":-[0-9]*,//\' -e \'s/,"oomScoreAdj":-[0-9]*//\' "$a/config.json"',
      '  fi',
      '  prev="$a"',
      'done',
      'exec runc "$@"',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  const cniDir = path.join(dir, 'cni');
  fs.mkdirSync(cniDir);
  const subnet = `10.${200 + (process.pid % 50)}.0.0/16`;
  const bridge = `vrunbr${process.pid % 1000}`;
  fs.writeFileSync(
    path.join(cniDir, '10-vrun-test.conflist'),
    JSON.stringify({
      cniVersion: '0.4.0',
      name: 'vrun-test',
      plugins: [
        { type: 'bridge', bridge, isGateway: true, ipMasq: false, ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir: path.join(dir, 'ipam') } },
        { type: 'loopback' },
      ],
    }),
  );
  const address = path.join(dir, 'c.sock');
  const config = [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]',
    '[grpc]',
    `  address = "${address}"`,
    '[debug]',
    '  level = "debug"',
    '[plugins."io.containerd.grpc.v1.cri"]',
    `  sandbox_image = "${PAUSE_IMAGE}"`,
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    '  disable_apparmor = true',
    '  [plugins."io.containerd.grpc.v1.cri".containerd]',
    '    snapshotter = "native"',
    '    default_runtime_name = "runc"',
    '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
    '      runtime_type = "io.containerd.runc.v2"',
    '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
    `        BinaryName = "${runcWrapper}"`,
    '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.vrun]',
    '      runtime_type = "io.containerd.vrun.v2"',
    '  [plugins."io.containerd.grpc.v1.cri".cni]',
    '    bin_dir = "/usr/lib/cni"',
    `    conf_dir = "${cniDir}"`,
    '  [plugins."io.containerd.grpc.v1.cri".registry]',
    `    config_path = "${dir}/certs.d"`,
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'config.toml'), config);
  const logFile = path.join(dir, 'containerd.log');
  const out = fs.openSync(logFile, 'a');
  // nsenter execs containerd in place: the child's pid is containerd's.
  const child: ChildProcess = spawn('nsenter', [`--net=${netns}`, '--', '/usr/bin/containerd', '--config', path.join(dir, 'config.toml')], {
    stdio: ['ignore', out, out],
    env: { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` },
  });
  fs.closeSync(out);
  let exited = false;
  const exitPromise = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  const log = () => fs.readFileSync(logFile, 'utf8');
  const deadline = Date.now() + 30_000;
  while (!(await canConnect(address))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      await deleteNetns(netnsId).catch(() => undefined);
      throw new Error(`containerd (CRI) did not start:\n${log().slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const ctr = (...args: string[]) => run('ctr', ['--address', address, '--namespace', 'k8s.io', ...args], { timeout: 120_000 });
  await ctr('images', 'import', '--snapshotter', 'native', buildBusyboxArchive(path.join(dir, 'busybox')));
  await ctr('images', 'import', '--snapshotter', 'native', buildBusyboxArchive(path.join(dir, 'pause'), PAUSE_IMAGE, ['/bin/sleep', '2147483647']));

  // From the source tree: the compiled benchmark runs from dist/, where the .proto is not copied.
  const protoPath = path.join(projectRoot(), 'test', 'shim', 'cri-subset.proto');
  const def = protoLoader.loadSync(protoPath, { keepCase: false, longs: Number, defaults: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as { runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor } } };
  const client = new pkg.runtime.v1.RuntimeService(`unix:${address}`, grpc.credentials.createInsecure());
  const logDir = path.join(dir, 'pod-logs');
  fs.mkdirSync(logDir);

  return {
    dir,
    logDir,
    netns,
    bridge,
    connect: (host: string, port: number) => connectInNetns(netns, host, port),
    log,
    importImage: (archive: string) => ctr('images', 'import', '--snapshotter', 'native', archive),
    call<T>(method: string, req: unknown, timeoutMs = 600_000): Promise<T> {
      const fn = (client as unknown as Record<string, Unary>)[method];
      if (!fn) throw new Error(`no CRI method ${method}`);
      return new Promise((resolve, reject) => {
        fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as T)));
      });
    },
    async stop() {
      client.close();
      if (!exited) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exitPromise;
        clearTimeout(killer);
      }
      // The bridge, its iptables rules and any veth left behind go with the namespace.
      await deleteNetns(netnsId).catch(() => undefined);
      await run('umount', ['-R', '-l', dir]).catch(() => undefined);
      for (const mp of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(dir)).reverse()) {
        await run('umount', ['-l', mp]).catch(() => undefined);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
