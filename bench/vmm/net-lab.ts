import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorMessage } from '../../src/common/errors.js';
import { BASE_CMDLINE } from '../../src/guest-image/guest-contract.js';
import { loadGuestImage } from '../../src/guest-image/image.js';
import { run, runChecked } from '../../src/network/exec.js';
import { createNetns, deleteNetns, netnsName } from '../../src/network/netns.js';
import { attachTap, redirectedPackets, type PodNic } from '../../src/network/tap.js';
import type { ConsoleLog } from '../../src/vmm/console-log.js';
import { launchNative } from '../../src/vmm/native-backend.js';
import { QemuVm } from '../../src/vmm/qemu/machine.js';
import { RECV_PORT, SEND_PORT, type PeerReport } from './net-peer.js';

/**
 * The pod network in the KVM lab: the real guest image on the native VMM or on `qemu -enable-kvm`, with a
 * virtio-net NIC on a tap next to a veth (src/network/tap.ts's tc redirect, as a pod gets it), and the far end
 * of the veth in a peer namespace running bench/vmm/net-peer.js. The guest reports its NIC's MAC and MTU,
 * pings the peer (and the peer pings it), then sends `bytes` to the peer and receives `bytes` from it over TCP
 * (busybox nc), hashing both streams when asked. Prints one `VRUN-NETLAB {...}` line per VMM; the slow test
 * (test/vmm/native-net-lab.slow.test.ts) and the benchmark (bench/network.ts) read them.
 *
 * Safety: every link lives in the two namespaces made here (in L1, or on a host with hardware
 * virtualization), neither has a route off the machine, and both are removed at the end.
 */

export type NetLabVmm = 'native' | 'qemu';

export interface NetLabOptions {
  vmm: NetLabVmm;
  bytes: number;
  /** Random data hashed on both ends (the test); zeros and no hashing in the guest otherwise (the benchmark). */
  verify: boolean;
  vcpus: number;
  memoryMiB: number;
  timeoutMs: number;
}

export interface NetLabReport {
  vmm: NetLabVmm;
  bytes: number;
  attempts: number;
  /** Why an attempt was run again: an L2 RCU stall, or a vCPU stuck in L1's KVM (below both VMMs, see the README). */
  retries: string[];
  mac?: string;
  mtu?: number;
  podMac: string;
  podMtu: number;
  guestPing?: string;
  peerPing?: { code: number | null; output: string };
  guestToPeer?: PeerReport;
  peerToGuest?: PeerReport;
  /** The guest's own hashes of what it sent and received (verify only). */
  guestTxSha?: string;
  guestRxSha?: string;
  guestTxStatus?: number;
  /** MB/s (10^6 bytes per second) as the peer timed each transfer. */
  guestToPeerMBps?: number;
  peerToGuestMBps?: number;
  redirected?: { veth: number; tap: number };
  offloads?: number;
  device?: unknown;
  /** Every VRUN-NET line the guest printed, without the prefix. */
  guestLines?: string[];
  error?: string;
  consoleTail?: string;
  /** The VMM's diagnosis of the last attempt whose transfers stopped (native only): its vCPUs, stuckInKvm. */
  hang?: Record<string, unknown>;
}

const POD_MAC = '02:13:00:00:00:02';
const MTU = 1400;
const PEER_IP = '10.213.0.1';
const GUEST_IP = '10.213.0.2';
const STALL = /rcu_sched detected stalls/;
const MAX_ATTEMPTS = 3;
/**
 * A transfer that moves fewer than `minBytes` through the device in `windowMs` has stopped: the slowest healthy
 * lab run moved 0.2 MB/s, 24 MB in that time, and a stopped one still trickles TCP retransmissions.
 */
export const STOPPED = { windowMs: 120_000, minBytes: 1 << 20, everyMs: 15_000 };

type NetDeviceState = { device?: string; state?: Record<string, unknown>; queues?: unknown };

function netDevice(d: Record<string, unknown>): NetDeviceState | undefined {
  return (d.virtio as NetDeviceState[] | undefined)?.find((v) => v.device?.includes('net:'));
}

/** Both directions' payload bytes through the native device, or undefined when the VMM cannot say. */
function deviceBytes(d: Record<string, unknown>): number | undefined {
  const s = netDevice(d)?.state;
  return typeof s?.rxBytes === 'number' && typeof s.txBytes === 'number' ? s.rxBytes + s.txBytes : undefined;
}

/**
 * Samples the device's byte counters every `everyMs` while `running()`; resolves with the VMM's whole diagnosis
 * once fewer than `minBytes` went through in `windowMs`, or undefined when the transfers ended or the VMM cannot
 * be asked.
 */
export async function watchTransfers(
  vm: Pick<Booted, 'diagnose'>,
  running: () => boolean,
  limits: typeof STOPPED = STOPPED,
): Promise<Record<string, unknown> | undefined> {
  const samples: { at: number; bytes: number }[] = [];
  while (running()) {
    await new Promise((r) => setTimeout(r, limits.everyMs));
    if (!running()) return undefined;
    const d = await vm.diagnose().catch(() => undefined);
    const bytes = d && deviceBytes(d);
    if (bytes === undefined) return undefined;
    const now = Date.now();
    samples.push({ at: now, bytes });
    while (samples.length > 1 && now - samples[1]!.at >= limits.windowMs) samples.shift();
    if (now - samples[0]!.at >= limits.windowMs && bytes - samples[0]!.bytes < limits.minBytes) return d;
  }
  return undefined;
}

/** The guest's part, run by its init instead of the agent; spaces go as %20 (guest-image/vrun-init). */
export function guestCommand(bytes: number, verify: boolean): string {
  const src = verify ? '/dev/urandom' : '/dev/zero';
  const send = verify
    ? `mkfifo /tmp/f; (echo VRUN-NET tx-sha=$(sha256sum </tmp/f)) & head -c ${bytes} ${src} | tee /tmp/f | nc ${PEER_IP} ${RECV_PORT}; echo VRUN-NET tx-nc=$?; wait`
    : `head -c ${bytes} ${src} | nc ${PEER_IP} ${RECV_PORT}; echo VRUN-NET tx-nc=$?`;
  const recv = verify ? `echo VRUN-NET rx-sha=$(nc ${PEER_IP} ${SEND_PORT} </dev/null | sha256sum)` : `nc ${PEER_IP} ${SEND_PORT} </dev/null >/dev/null`;
  return [
    'echo VRUN-NET mac=$(cat /sys/class/net/eth0/address) mtu=$(cat /sys/class/net/eth0/mtu)',
    `ip addr add ${GUEST_IP}/24 dev eth0`,
    'ip link set eth0 up',
    `if ping -c 3 -w 60 ${PEER_IP}; then echo VRUN-NET ping=ok; else echo VRUN-NET ping=failed; fi`,
    send,
    recv,
    'echo VRUN-NET done',
    'sleep 3600',
  ].join('; ');
}

export interface Booted {
  console: ConsoleLog;
  /** Settles with how the VM ended. */
  ended: Promise<string>;
  /** Device-side state for the report (native only). */
  state(): Promise<unknown>;
  /** The VMM's whole view of the guest: vCPUs, devices, `stuckInKvm` (native only). */
  diagnose(): Promise<Record<string, unknown> | undefined>;
  stop(): Promise<void>;
}

/** The native VMM as vrun runs it: a jailed process of its own that gets the tap as an fd from the jailer. */
async function bootNative(opts: NetLabOptions, nic: PodNic, dir: string, cmd: string): Promise<Booted> {
  const image = await loadGuestImage('guest-image');
  const runDir = path.join(dir, 'run');
  await mkdir(runDir, { mode: 0o700 });
  const vm = await launchNative(
    { backend: 'native', accel: 'kvm' },
    {
      kernel: image.kernel,
      initrd: image.initrd,
      cmdline: `quiet vrun.cmd=${cmd.replace(/ /g, '%20')}`,
      vcpus: opts.vcpus,
      memoryMiB: opts.memoryMiB,
      runDir,
      agentSocket: path.join(runDir, 'agent.sock'),
      shares: [],
      consoleLog: path.join(dir, 'console.log'),
      nets: [{ netns: nic.netns, tap: nic.tap, mac: nic.mac, mtu: nic.mtu }],
    },
  );
  return {
    console: vm.console,
    ended: vm.exited.then((e) => JSON.stringify(e)),
    state: async () => netDevice((await vm.diagnose?.()) ?? {}),
    diagnose: async () => vm.diagnose?.(),
    stop: () => vm.kill(),
  };
}

async function bootQemu(opts: NetLabOptions, nic: PodNic, dir: string, cmd: string): Promise<Booted> {
  const image = await loadGuestImage('guest-image');
  // QEMU opens the tap by name, so it runs in the pod namespace (as the jailer puts it in production).
  const vm = QemuVm.start(
    {
      kernel: image.kernel,
      initrd: image.initrd,
      cmdline: `${BASE_CMDLINE} quiet vrun.cmd=${cmd.replace(/ /g, '%20')}`,
      vcpus: opts.vcpus,
      memoryMiB: opts.memoryMiB,
      accel: 'kvm',
      nets: [{ ifname: nic.tap, mac: nic.mac, mtu: nic.mtu }],
    },
    { consoleLog: path.join(dir, 'console.log'), wrap: (bin, args) => ({ command: 'nsenter', args: [`--net=${nic.netns}`, '--', bin, ...args] }) },
  );
  return {
    console: vm.console,
    ended: vm.exited.then((e) => JSON.stringify(e.end)),
    state: () => Promise.resolve(undefined),
    diagnose: () => Promise.resolve(undefined),
    stop: async () => void (await vm.kill()),
  };
}

/** The peer program in the peer namespace; resolves once it listens. */
async function startPeer(peerNs: string, bytes: number, timeoutMs: number, reports: PeerReport[]): Promise<ChildProcess> {
  const script = path.join(import.meta.dirname, 'net-peer.js');
  const child = spawn('nsenter', [`--net=${peerNs}`, '--', process.execPath, script, PEER_IP, String(bytes), String(timeoutMs)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === 'VRUN-PEER-LISTENING') resolve();
        else if (line.startsWith('VRUN-PEER ')) reports.push(JSON.parse(line.slice(10)) as PeerReport);
      }
    });
    child.once('exit', (code) => reject(new Error(`net-peer exited with ${code} before listening: ${stderr.trim()}`)));
  });
  return child;
}

async function waitUntil(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const mbps = (r: PeerReport | undefined) => (r && !r.error && r.ms > 0 ? Number((r.bytes / 1e6 / (r.ms / 1000)).toFixed(2)) : undefined);

/**
 * One boot with the network set up fresh; `stalled` says why it is worth another boot: the guest hit the L2 RCU
 * stall, or the transfers stopped with a guest vCPU stuck in L1's KVM (src/vmm/kvm/stuck-in-kvm.ts). Both lie
 * below our VMM; a transfer that stops for any other reason fails the run with the VMM's diagnosis.
 */
async function attempt(opts: NetLabOptions, id: string, rep: NetLabReport): Promise<{ stalled: string | undefined }> {
  const podId = `netlab-${id}`;
  const peerId = `netlab-peer-${id}`;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'vrun-netlab-'));
  let vm: Booted | undefined;
  let peer: ChildProcess | undefined;
  const lines: string[] = [];
  let stalled: string | undefined;
  try {
    const podNs = await createNetns(podId);
    const peerNs = await createNetns(peerId);
    // Made inside the peer namespace, one end moved straight into the pod's: neither is ever in L1's own.
    await runChecked(['ip', 'link', 'add', 'vpeer', 'mtu', String(MTU), 'type', 'veth', 'peer', 'name', 'veth0', 'mtu', String(MTU), 'address', POD_MAC, 'netns', netnsName(podId)], { netns: peerNs });
    await runChecked(['ip', 'addr', 'add', `${PEER_IP}/24`, 'dev', 'vpeer'], { netns: peerNs });
    await runChecked(['ip', 'link', 'set', 'vpeer', 'up'], { netns: peerNs });
    await runChecked(['ip', 'addr', 'add', `${GUEST_IP}/24`, 'dev', 'veth0'], { netns: podNs });
    await runChecked(['ip', 'link', 'set', 'veth0', 'up'], { netns: podNs });
    const nic = await attachTap(podNs, 'veth0');
    const peerReports: PeerReport[] = [];
    peer = await startPeer(peerNs, opts.bytes, opts.timeoutMs, peerReports);
    const cmd = guestCommand(opts.bytes, opts.verify);
    vm = opts.vmm === 'native' ? await bootNative(opts, nic, dir, cmd) : await bootQemu(opts, nic, dir, cmd);
    const booted = vm;
    const con = vm.console;
    let ended: string | undefined;
    void vm.ended.then((e) => (ended = e));
    let pinged: Promise<void> | undefined;
    let hung: Record<string, unknown> | undefined;
    let watching = false;
    const transferring = () => stalled === undefined && ended === undefined && !lines.includes('done');
    con.onLine((l) => {
      if (STALL.test(l)) stalled ??= l.trim();
      const net = /^VRUN-NET (.*)$/.exec(l.trim());
      if (!net) return;
      lines.push(net[1]!);
      if (net[1]!.startsWith('ping=')) {
        rep.guestPing = net[1]!.slice(5);
        // The transfers start now: from here on the device's counters must keep moving.
        if (!watching) {
          watching = true;
          void watchTransfers(booted, transferring).then((d) => (hung = d));
        }
        // The other way round, while the guest goes on to the transfers.
        pinged = run(['/bin/busybox', 'ping', '-c', '2', '-w', '60', GUEST_IP], { netns: peerNs, timeoutMs: 90_000 }).then((r) => {
          rep.peerPing = { code: r.code, output: (r.stdout + r.stderr).trim().split('\n').slice(-3).join('\n') };
        });
      }
    });
    await waitUntil(() => stalled !== undefined || hung !== undefined || lines.includes('done') || ended !== undefined, opts.timeoutMs, 'the guest to finish its transfers');
    if (stalled) return { stalled };
    if (hung) {
      rep.device = netDevice(hung);
      rep.hang = { stuckInKvm: hung.stuckInKvm, stoppedVcpus: hung.stoppedVcpus, vcpus: hung.vcpus };
      const below = hung.stuckInKvm;
      if (typeof below === 'string') return { stalled: `transfers stopped (< ${STOPPED.minBytes} bytes in ${STOPPED.windowMs} ms) with ${below}` };
      throw new Error(`the transfers stopped: less than ${STOPPED.minBytes} bytes through the device in ${STOPPED.windowMs} ms, no vCPU stuck in L1's KVM (see hang and device)`);
    }
    if (!lines.includes('done')) throw new Error(`the VM ended (${ended}) before the transfers finished: ${con.recent(20)}`);
    await waitUntil(() => peerReports.length >= 2, 60_000, 'the peer reports');
    await pinged;
    const field = (k: string) => lines.find((l) => l.startsWith(`${k}=`))?.slice(k.length + 1);
    const facts = lines.find((l) => l.startsWith('mac='));
    const f = /^mac=(\S+) mtu=(\d+)$/.exec(facts ?? '');
    if (f) {
      rep.mac = f[1];
      rep.mtu = Number(f[2]);
    }
    rep.guestTxSha = /[0-9a-f]{64}/.exec(field('tx-sha') ?? '')?.[0];
    rep.guestRxSha = /[0-9a-f]{64}/.exec(field('rx-sha') ?? '')?.[0];
    rep.guestTxStatus = field('tx-nc') === undefined ? undefined : Number(field('tx-nc'));
    rep.guestToPeer = peerReports.find((r) => r.dir === 'guest-to-peer');
    rep.peerToGuest = peerReports.find((r) => r.dir === 'peer-to-guest');
    rep.guestToPeerMBps = mbps(rep.guestToPeer);
    rep.peerToGuestMBps = mbps(rep.peerToGuest);
    rep.redirected = { veth: await redirectedPackets(podNs, 'veth0'), tap: await redirectedPackets(podNs, nic.tap) };
    rep.device = await vm.state();
    return { stalled: undefined };
  } finally {
    rep.guestLines = lines;
    rep.consoleTail = vm?.console.recent(30);
    if (vm && rep.device === undefined) rep.device = await vm.state().catch((e: unknown) => errorMessage(e));
    await vm?.stop().catch(() => undefined);
    peer?.kill('SIGKILL');
    await deleteNetns(podId).catch(() => undefined);
    await deleteNetns(peerId).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

export async function netLab(opts: NetLabOptions): Promise<NetLabReport> {
  const rep: NetLabReport = { vmm: opts.vmm, bytes: opts.bytes, attempts: 0, retries: [], podMac: POD_MAC, podMtu: MTU };
  try {
    for (;;) {
      rep.attempts++;
      const { stalled } = await attempt(opts, `${process.pid}-${opts.vmm}-${rep.attempts}`, rep);
      if (!stalled) break;
      if (rep.attempts >= MAX_ATTEMPTS) throw new Error(`a failure below the VMM on every one of ${MAX_ATTEMPTS} boots, the last: ${stalled}`);
      rep.retries.push(stalled);
    }
  } catch (err) {
    rep.error = errorMessage(err);
  }
  return rep;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // net-lab.js [--verify] [--mib N] [--vcpus N] native|qemu ...: one VRUN-NETLAB line per VMM, in order.
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: number) => {
    const at = args.indexOf(name);
    return at >= 0 ? Number(args.splice(at, 2)[1]) : dflt;
  };
  const verifyAt = args.indexOf('--verify');
  if (verifyAt >= 0) args.splice(verifyAt, 1);
  const mib = opt('--mib', 100);
  const vcpus = opt('--vcpus', 2);
  (async () => {
    for (const vmm of args.length > 0 ? args : ['native']) {
      if (vmm !== 'native' && vmm !== 'qemu') throw new Error(`no such VMM ${vmm}`);
      const r = await netLab({ vmm, bytes: mib * 1024 * 1024, verify: verifyAt >= 0, vcpus, memoryMiB: 512, timeoutMs: 1_500_000 });
      process.stdout.write(`VRUN-NETLAB ${JSON.stringify(r)}\n`);
    }
  })().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`net-lab: ${errorMessage(err)}\n`);
      process.exit(1);
    },
  );
}
