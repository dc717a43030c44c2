import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import type { AgentClient } from '../agent/host/client.js';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { attachPodNics, detachPodNics, guestNetworkOf, podInterfaces, podIps, vmNetsOf, type AttachedNic } from '../network/pod-nics.js';
import type { VmNet } from '../vmm/backend.js';
import { PortForwarder, removeRedirectRule } from './port-forward.js';

/**
 * A CRI pod's network, shim side. containerd's CNI made the pod's network namespace (its path is in the
 * sandbox's OCI spec) and its interfaces before the sandbox starts, and tears them down after it stopped; the
 * shim puts a tap next to each interface for the VM (the guest NIC takes the interface's MAC and addresses),
 * and runs the port-forward listener in the namespace. What it made is recorded in the pod's directory, so
 * `delete` after a shim crash can remove it too.
 */
export interface PodNetworkRecord {
  netns: string;
  nics: { veth: string; tap: string }[];
  forwardPort?: number;
}

export class PodNetwork {
  private forwarder: PortForwarder | undefined;
  private released = false;

  private constructor(
    readonly netns: string,
    readonly nics: AttachedNic[],
    private readonly recordFile: string,
    private readonly log: Logger,
  ) {}

  /** Taps next to the CNI interfaces of `netns` (none for a namespace with only loopback). */
  static async attach(netns: string, recordFile: string, log: Logger): Promise<PodNetwork> {
    const ifnames = await podInterfaces(netns);
    const nics = ifnames.length > 0 ? await attachPodNics(netns, ifnames) : [];
    const net = new PodNetwork(netns, nics, recordFile, log);
    try {
      await net.writeRecord();
    } catch (err) {
      await net.release();
      throw err;
    }
    log.info({ netns, nics: nics.map((n) => ({ veth: n.veth, tap: n.tap, mac: n.mac })), ips: podIps(nics) }, 'pod network attached');
    return net;
  }

  get vmNets(): VmNet[] {
    return vmNetsOf(this.nics);
  }

  /**
   * Once the agent is up, before any container: the guest's interfaces, then the port-forward listener. A pod
   * runs without port-forward rather than not at all (no iptables on the host, a namespace without loopback).
   */
  async configureGuest(agent: AgentClient): Promise<void> {
    if (this.nics.length > 0) await agent.configureNetwork(guestNetworkOf(this.nics));
    try {
      this.forwarder = await PortForwarder.start(this.netns, agent, this.log);
    } catch (err) {
      this.log.warn({ err: errorMessage(err), netns: this.netns }, 'port-forward is not available for this pod');
      return;
    }
    await this.writeRecord();
  }

  private async writeRecord(): Promise<void> {
    const rec: PodNetworkRecord = { netns: this.netns, nics: this.nics.map((n) => ({ veth: n.veth, tap: n.tap })), forwardPort: this.forwarder?.port };
    await writeFile(this.recordFile, JSON.stringify(rec) + '\n', { mode: 0o600 });
  }

  /** Stops the port-forward and removes the taps; safe to call twice. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.forwarder?.stop().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'stopping the port-forward failed'));
    await releaseInNetns({ netns: this.netns, nics: this.nics }, (o, msg) => this.log.warn(o, msg));
    await rm(this.recordFile, { force: true });
  }
}

/**
 * Removes what a record names from the pod's namespace. containerd removes the namespace itself after its
 * CNI DEL, possibly while this runs: a namespace that is gone took everything in it along.
 */
type Warn = (obj: object, msg: string) => void;

async function releaseInNetns(rec: PodNetworkRecord, warn: Warn): Promise<void> {
  if (!existsSync(rec.netns)) return;
  if (rec.forwardPort !== undefined) await removeRedirectRule(rec.netns, rec.forwardPort).catch((err: unknown) => warn({ err: errorMessage(err) }, 'removing the port-forward rule failed'));
  await detachPodNics(rec.nics.map((n) => ({ ...n, netns: rec.netns }))).catch((err: unknown) => {
    if (existsSync(rec.netns)) warn({ err: errorMessage(err) }, 'removing the pod\'s taps failed');
  });
}

/** For `delete` after the shim died: the record in the pod's directory, if there is a well-formed one. */
export async function readNetworkRecord(recordFile: string): Promise<PodNetworkRecord | undefined> {
  try {
    const rec: unknown = JSON.parse(await readFile(recordFile, 'utf8'));
    return isRecord(rec) ? rec : undefined;
  } catch {
    return undefined;
  }
}

/** Removes what a dead shim's record names, once its VMM is gone. */
export async function releaseRecordedNetwork(rec: PodNetworkRecord | undefined, warn: Warn): Promise<void> {
  if (rec) await releaseInNetns(rec, warn);
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;

function isRecord(v: unknown): v is PodNetworkRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.netns === 'string' &&
    r.netns.startsWith('/') &&
    Array.isArray(r.nics) &&
    r.nics.length <= 16 &&
    r.nics.every((n: unknown) => typeof n === 'object' && n !== null && NAME_RE.test(String((n as Record<string, unknown>).veth)) && NAME_RE.test(String((n as Record<string, unknown>).tap))) &&
    (r.forwardPort === undefined || (Number.isInteger(r.forwardPort) && (r.forwardPort as number) > 0 && (r.forwardPort as number) < 65536))
  );
}
