import path from 'node:path';
import { VrunError } from '../../common/errors.js';
import { checkVmNets, MAX_VM_NETS } from '../backend.js';
import { MAX_VCPUS } from '../boot/mptable.js';

/**
 * What the jailed native VMM process (vmm-main.ts) is asked to run: the sandbox writes it as JSON into the
 * pod's run directory, the VMM process reads and checks it before anything else. Every path is one the jail
 * holds at the same place: the boot files (read-only) and the run directory (read-write), where the agent
 * socket and virtiofsd's sockets are. Taps arrive as fds the jailer opened.
 */
export interface VmmLaunchSpec {
  kernel: string;
  initrd?: string;
  cmdline: string;
  vcpus: number;
  memoryMiB: number;
  /** The run directory the jail was given; every socket is directly in it. */
  runDir: string;
  /** The `vrun.agent` console port's socket, which the VMM listens on. */
  agentSocket: string;
  /** virtio-fs devices, each on a virtiofsd listening on `socket`. */
  shares: { tag: string; socket: string }[];
  /** virtio-net devices, each on the tap the jailer opened on fd `fd`. */
  nets: { fd: number; tap: string; mac: string; mtu: number }[];
  /** Free page reporting (a virtio-balloon); absent means on. */
  freePageReporting?: boolean;
  /** The shared userland image, mapped read-only as persistent memory (Machine's userlandPmem). */
  userlandPmem?: string;
}

/** The spec file is small; anything larger is not one. */
export const MAX_LAUNCH_SPEC_BYTES = 64 * 1024;
const MAX_CMDLINE = 4096;
const MAX_SHARES = 16;
/** The largest guest a spec may ask for (1 TiB), far above what a pod gets but below what overflows anything. */
const MAX_MEMORY_MIB = 1 << 20;
/** virtio-fs tags are at most 36 bytes. */
const TAG = /^[A-Za-z0-9_.-]{1,36}$/;
const KEYS = new Set(['kernel', 'initrd', 'cmdline', 'vcpus', 'memoryMiB', 'runDir', 'agentSocket', 'shares', 'nets', 'freePageReporting', 'userlandPmem']);

function bad(why: string): VrunError {
  return new VrunError(`invalid VMM launch spec: ${why}`, { kind: 'invalid' });
}

function plainAbsolute(what: string, v: unknown): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096) throw bad(`${what} must be a path (a non-empty string)`);
  if (!path.isAbsolute(v) || path.normalize(v) !== v || v.includes('\0') || v.endsWith('/')) throw bad(`${what} ${JSON.stringify(v)} is not a plain absolute path`);
  return v;
}

function integer(what: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(`${what} must be a whole number from ${min} to ${max}, not ${JSON.stringify(v)}`);
  return v;
}

function list(what: string, v: unknown, max: number): unknown[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw bad(`${what} must be a list`);
  if (v.length > max) throw bad(`${what} has ${v.length} entries, at most ${max}`);
  return v as unknown[];
}

function record(what: string, v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${what} must be an object`);
  return v as Record<string, unknown>;
}

/** A socket of the VM: directly in the run directory, the only writable place the jail has. */
function socketIn(runDir: string, what: string, v: unknown): string {
  const p = plainAbsolute(what, v);
  if (path.dirname(p) !== runDir) throw bad(`${what} ${p} is outside the run directory ${runDir}`);
  return p;
}

/** Parses and checks a launch spec; a VrunError (kind invalid) names the first thing wrong. */
export function parseLaunchSpec(text: string): VmmLaunchSpec {
  if (Buffer.byteLength(text) > MAX_LAUNCH_SPEC_BYTES) throw bad(`larger than ${MAX_LAUNCH_SPEC_BYTES} bytes`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw bad(`not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  const o = record('the spec', raw);
  const unknown = Object.keys(o).filter((k) => !KEYS.has(k));
  if (unknown.length > 0) throw bad(`unknown field ${JSON.stringify(unknown[0])}`);
  const runDir = plainAbsolute('runDir', o.runDir);
  if (typeof o.cmdline !== 'string' || o.cmdline.length > MAX_CMDLINE || /[^\x20-\x7e]/.test(o.cmdline)) {
    throw bad(`cmdline must be printable ASCII of at most ${MAX_CMDLINE} characters`);
  }
  const shares = list('shares', o.shares, MAX_SHARES).map((s, i) => {
    const r = record(`shares[${i}]`, s);
    if (typeof r.tag !== 'string' || !TAG.test(r.tag)) throw bad(`shares[${i}].tag ${JSON.stringify(r.tag)} is not a virtio-fs tag`);
    return { tag: r.tag, socket: socketIn(runDir, `shares[${i}].socket`, r.socket) };
  });
  const nets = list('nets', o.nets, MAX_VM_NETS).map((n, i) => {
    const r = record(`nets[${i}]`, n);
    return { fd: integer(`nets[${i}].fd`, r.fd, 3, 255), tap: r.tap as string, mac: r.mac as string, mtu: r.mtu as number };
  });
  // The names, MACs and MTUs are checked as the sandbox checks them; the namespace is the one the process is in.
  checkVmNets(nets.map((n) => ({ netns: '/proc/self/ns/net', tap: n.tap, mac: n.mac, mtu: n.mtu })));
  if (new Set(nets.map((n) => n.fd)).size !== nets.length) throw bad('two NICs on one fd');
  if (o.freePageReporting !== undefined && typeof o.freePageReporting !== 'boolean') throw bad('freePageReporting must be true or false');
  return {
    kernel: plainAbsolute('kernel', o.kernel),
    ...(o.initrd === undefined ? {} : { initrd: plainAbsolute('initrd', o.initrd) }),
    cmdline: o.cmdline,
    vcpus: integer('vcpus', o.vcpus, 1, MAX_VCPUS),
    memoryMiB: integer('memoryMiB', o.memoryMiB, 64, MAX_MEMORY_MIB),
    runDir,
    agentSocket: socketIn(runDir, 'agentSocket', o.agentSocket),
    shares,
    nets: nets.map((n) => ({ ...n, mac: n.mac.toLowerCase() })),
    ...(o.freePageReporting === undefined ? {} : { freePageReporting: o.freePageReporting }),
    ...(o.userlandPmem === undefined ? {} : { userlandPmem: plainAbsolute('userlandPmem', o.userlandPmem) }),
  };
}
