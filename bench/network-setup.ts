import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cniAdd, cniDel, loadNetworkFor, type Attachment, type CniEnv } from '../src/network/cni.js';
import type { NetworkConfigList } from '../src/network/cni-config.js';
import { createNetns, deleteNetns } from '../src/network/netns.js';
import { attachPodNics, detachPodNics, podInterfaces } from '../src/network/pod-nics.js';

/**
 * The host-side time networking adds to a pod start and removal, vrun's way (network namespace, CNI ADD with
 * the default `vrun` conflist, a tap + tc redirects per interface, and back: detach, CNI DEL, namespace gone)
 * next to the same CNI network set up for `crun run` (namespace, CNI ADD, a container run in it by crun, CNI
 * DEL, namespace gone; no tap). Rounds alternate so load drifts hit both alike; medians are printed.
 *
 * Safety: the CNI plugins run inside a "host" namespace the bench makes (CniEnv.runIn, as
 * test/network/pod-network.test.ts does), so the bridge, its iptables rules and ip_forward land there; the pod
 * namespaces are the bench's own too, and all of them are removed at the end.
 */

const ROUNDS = Number(process.env.VRUN_BENCH_NETSETUP_ROUNDS ?? 15);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const ms = (n: number) => `${n.toFixed(1)} ms`;

/** An OCI bundle whose container runs busybox `true` in the network namespace at `netns`. */
function crunBundle(dir: string): (netns: string) => string {
  const rootfs = path.join(dir, 'rootfs');
  mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
  copyFileSync('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
  const spec = spawnSync('crun', ['spec'], { cwd: dir, encoding: 'utf8' });
  if (spec.status !== 0) throw new Error(`crun spec failed: ${spec.stderr}`);
  const base = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as {
    process: { terminal: boolean; args: string[]; rlimits?: unknown[] };
    root: { path: string; readonly: boolean };
    mounts: { destination: string }[];
    linux: { namespaces: { type: string; path?: string }[]; resources?: unknown };
  };
  base.process.terminal = false;
  base.process.args = ['/bin/busybox', 'true'];
  // As bench/run-phases.ts: host cgroups are hybrid here, so crun gets a private cgroup2 mount (see crunRun) and
  // no cgroup namespace, no device rules (an eBPF program this host refuses), no rlimits above the host's.
  base.process.rlimits = [];
  base.root = { path: 'rootfs', readonly: true };
  base.mounts = base.mounts.filter((m) => m.destination !== '/sys/fs/cgroup');
  base.linux.resources = { devices: [] };
  const others = base.linux.namespaces.filter((n) => n.type !== 'network' && n.type !== 'cgroup');
  return (netns) => {
    const spec = { ...base, linux: { ...base.linux, namespaces: [...others, { type: 'network', path: netns }] } };
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(spec));
    return dir;
  };
}

interface Round {
  /** Namespace + CNI ADD (+ taps for vrun): what a pod start waits for. */
  start: number;
  /** The tap part of `start` (vrun only). */
  taps?: number;
  /** crun run of the container itself (crun only): the reference for what a start costs anyway. */
  crun?: number;
  /** Detach (vrun), CNI DEL, namespace removal. */
  teardown: number;
}

async function vrunRound(env: CniEnv, list: NetworkConfigList, id: string): Promise<Round> {
  const t0 = performance.now();
  const netns = await createNetns(id);
  const a: Attachment = { containerId: id, netns, ifname: 'eth0' };
  await cniAdd(env, list, a);
  const t1 = performance.now();
  const nics = await attachPodNics(netns, await podInterfaces(netns));
  const t2 = performance.now();
  await detachPodNics(nics);
  await cniDel(env, list, a);
  await deleteNetns(id);
  return { start: t2 - t0, taps: t2 - t1, teardown: performance.now() - t2 };
}

async function crunRound(env: CniEnv, list: NetworkConfigList, id: string, bundle: (netns: string) => string): Promise<Round> {
  const t0 = performance.now();
  const netns = await createNetns(id);
  const a: Attachment = { containerId: id, netns, ifname: 'eth0' };
  await cniAdd(env, list, a);
  const t1 = performance.now();
  // slave, not unshare's default private: a namespace another process removes meanwhile must not stay mounted here.
  const cmd = `mount -t cgroup2 none /sys/fs/cgroup && exec crun run --bundle ${bundle(netns)} ${id}`;
  const r = spawnSync('unshare', ['-m', '--propagation', 'slave', 'sh', '-c', cmd], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`crun run failed (${r.status}): ${r.stderr}`);
  const t2 = performance.now();
  await cniDel(env, list, a);
  await deleteNetns(id);
  return { start: t1 - t0, crun: t2 - t1, teardown: performance.now() - t2 };
}

export async function run(): Promise<void> {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'vrun-bench-netsetup-'));
  const tag = `b${process.pid}`;
  const hostId = `bench-nethost-${tag}`;
  const made: string[] = [];
  try {
    const hostNs = await createNetns(hostId);
    const env: CniEnv = {
      pluginDirs: ['/usr/lib/cni'],
      confDir: path.join(tmp, 'net.d'),
      cacheDir: path.join(tmp, 'cache'),
      runIn: hostNs,
      defaultNetwork: { dataDir: path.join(tmp, 'ipam') },
    };
    const list = loadNetworkFor(env, 'vrun');
    const bundle = crunBundle(path.join(tmp, 'bundle'));
    const vrun: Round[] = [];
    const crun: Round[] = [];
    // Round 0 of each is a warm-up: the first ADD makes the bridge and its rules, and loads the plugins.
    for (let i = 0; i <= ROUNDS; i++) {
      const v = `bench-v-${tag}-${i}`;
      made.push(v);
      const rv = await vrunRound(env, list, v);
      const c = `bench-c-${tag}-${i}`;
      made.push(c);
      const rc = await crunRound(env, list, c, bundle);
      if (i > 0) {
        vrun.push(rv);
        crun.push(rc);
      }
    }
    const m = (rs: Round[], k: keyof Round) => median(rs.map((r) => r[k] ?? NaN));
    const vTotal = median(vrun.map((r) => r.start + r.teardown));
    const cTotal = median(crun.map((r) => r.start + r.teardown));
    process.stdout.write(`host-side pod networking, default bridge conflist (bridge + portmap + firewall), median of ${ROUNDS} alternating rounds\n`);
    process.stdout.write(
      `  pod start: vrun (netns + CNI ADD + tap/tc) ${ms(m(vrun, 'start'))} (taps ${ms(m(vrun, 'taps'))}, goal <= 50 ms)   crun's network (netns + CNI ADD) ${ms(m(crun, 'start'))}   vrun/crun = ${(m(vrun, 'start') / m(crun, 'start')).toFixed(2)}x\n`,
    );
    process.stdout.write(`  removal: vrun ${ms(m(vrun, 'teardown'))}   crun's network ${ms(m(crun, 'teardown'))}   vrun/crun = ${(m(vrun, 'teardown') / m(crun, 'teardown')).toFixed(2)}x\n`);
    process.stdout.write(`  start + removal: vrun ${ms(vTotal)}   crun's network ${ms(cTotal)}   vrun/crun = ${(vTotal / cTotal).toFixed(2)}x\n`);
    process.stdout.write(`  for scale: \`crun run\` of busybox true in that namespace took ${ms(m(crun, 'crun'))}\n`);
    process.stdout.write(`load average: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}\n`);
  } finally {
    for (const id of made) {
      spawnSync('crun', ['delete', '-f', id], { encoding: 'utf8' });
      await deleteNetns(id).catch(() => undefined);
    }
    await deleteNetns(hostId).catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  }
}
