import { errorMessage } from '../common/errors.js';
import type { OciProcess, OciSpec } from '../common/oci-spec.js';
import { Code, TtrpcError } from '../ttrpc/status.js';

/**
 * containerd's bundle config.json, made for a host runtime, turned into the spec the guest's crun runs:
 * what names the host (namespace paths of the pause container's host process, AppArmor/SELinux labels,
 * hooks that would run host binaries) is dropped, and host bind mounts become virtio-fs paths the shim
 * prepares in the pod's shared directory. The agent sets root.path and cgroupsPath itself.
 */
export interface HostBind {
  /** Index in the spec's mounts (the host side is mounted at <container dir>/mounts/<index>). */
  index: number;
  source: string;
  readonly: boolean;
}

export interface GuestSpec {
  spec: OciSpec;
  binds: HostBind[];
  terminal: boolean;
  /**
   * For a CRI pod's sandbox container: what belongs to the whole pod, i.e. to the guest, whose namespaces every
   * container of the pod shares (their namespace paths are dropped below): its hostname and sysctls.
   */
  pod?: { hostname?: string; sysctls: Record<string, string>; netns?: string };
}

const CRI_CONTAINER_TYPE = 'io.kubernetes.cri.container-type';

/**
 * What a VM cannot honour, refused by name instead of run with another meaning: the host's namespaces are on
 * the other side of the VM boundary, and so is mount propagation back to the host.
 */
function refuseHostOnly(linux: Record<string, unknown>, mounts: { destination: string; options?: string[] }[], isSandbox: boolean): void {
  if (isSandbox) {
    const types = new Set((Array.isArray(linux.namespaces) ? linux.namespaces : []).map((n: unknown) => (isObject(n) ? n.type : undefined)));
    const hostOnly: [string, string][] = [
      ['network', 'hostNetwork'],
      ['pid', 'hostPID'],
      ['ipc', 'hostIPC'],
    ];
    for (const [ns, field] of hostOnly) {
      if (!types.has(ns)) {
        throw new TtrpcError(Code.INVALID_ARGUMENT, `vrun cannot run a pod with ${field}: true: the pod runs in its own VM, and the host's ${ns} namespace is on the other side of the VM boundary`);
      }
    }
  }
  for (const m of mounts) {
    if (m.options?.some((o) => o === 'rshared' || o === 'shared')) {
      throw new TtrpcError(Code.INVALID_ARGUMENT, `vrun cannot propagate mounts from the container back to the host (mountPropagation: Bidirectional on ${m.destination}): the container runs in its own VM`);
    }
  }
}

/** The network namespace CRI made for the pod (containerd's CNI put its interfaces there). */
function podNetns(namespaces: unknown[]): { netns?: string } {
  const ns = namespaces.find((n: unknown) => isObject(n) && n.type === 'network');
  if (!isObject(ns) || ns.path === undefined) return {};
  if (typeof ns.path !== 'string' || !ns.path.startsWith('/')) throw invalid('the network namespace path must be absolute');
  return { netns: ns.path };
}

function stringRecord(v: unknown, what: string): Record<string, string> {
  if (v === undefined) return {};
  if (!isObject(v) || !Object.values(v).every((x) => typeof x === 'string')) throw invalid(`${what} must be an object of strings`);
  return v as Record<string, string>;
}

/** Filesystem types the guest kernel makes itself: never host paths. */
const KERNEL_FS = new Set(['proc', 'sysfs', 'tmpfs', 'devpts', 'mqueue', 'cgroup', 'cgroup2', 'shm', 'devtmpfs', 'securityfs', 'overlay']);

function invalid(msg: string): TtrpcError {
  return new TtrpcError(Code.INVALID_ARGUMENT, `bundle config.json: ${msg}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

/** Checks an OCI process object (from config.json, or an exec's spec); `what` names it in errors. */
export function checkProcess(p: unknown, what: string): OciProcess {
  if (!isObject(p)) throw new TtrpcError(Code.INVALID_ARGUMENT, `${what} must be an object`);
  if (!isStringArray(p.args) || p.args.length === 0) throw new TtrpcError(Code.INVALID_ARGUMENT, `${what}.args must be a non-empty array of strings`);
  if (p.cwd !== undefined && (typeof p.cwd !== 'string' || !p.cwd.startsWith('/'))) throw new TtrpcError(Code.INVALID_ARGUMENT, `${what}.cwd must be an absolute path, got ${JSON.stringify(p.cwd)}`);
  if (p.env !== undefined && !isStringArray(p.env)) throw new TtrpcError(Code.INVALID_ARGUMENT, `${what}.env must be an array of strings`);
  const { apparmorProfile: _a, selinuxLabel: _s, ...rest } = p;
  return rest as OciProcess;
}

export function parseExecProcess(json: Uint8Array): OciProcess {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(json).toString('utf8'));
  } catch (err) {
    throw new TtrpcError(Code.INVALID_ARGUMENT, `exec process spec is not valid JSON: ${errorMessage(err)}`);
  }
  return checkProcess(v, 'exec process spec');
}

export function guestSpecFromBundle(configJson: string): GuestSpec {
  let raw: unknown;
  try {
    raw = JSON.parse(configJson);
  } catch (err) {
    throw invalid(`not valid JSON: ${errorMessage(err)}`);
  }
  if (!isObject(raw)) throw invalid('must be a JSON object');
  const process = checkProcess(raw.process, 'bundle config.json: process');
  if (raw.root !== undefined && !isObject(raw.root)) throw invalid('root must be an object');
  const linux = raw.linux === undefined ? {} : raw.linux;
  if (!isObject(linux)) throw invalid('linux must be an object');
  const mountsIn = raw.mounts === undefined ? [] : raw.mounts;
  if (!Array.isArray(mountsIn)) throw invalid('mounts must be an array');

  const binds: HostBind[] = [];
  const mounts = mountsIn.map((m: unknown, index) => {
    if (!isObject(m) || typeof m.destination !== 'string' || !m.destination.startsWith('/')) throw invalid(`mounts[${index}] needs an absolute destination`);
    const options = m.options === undefined ? [] : m.options;
    if (!isStringArray(options)) throw invalid(`mounts[${index}].options must be an array of strings`);
    const type = typeof m.type === 'string' ? m.type : '';
    const isBind = type === 'bind' || options.includes('bind') || options.includes('rbind');
    if (isBind && !KERNEL_FS.has(type)) {
      if (typeof m.source !== 'string' || !m.source.startsWith('/')) throw invalid(`mounts[${index}] (${m.destination}) is a bind mount without an absolute source`);
      binds.push({ index, source: m.source, readonly: options.includes('ro') });
    }
    return { ...m, options } as { destination: string; type?: string; source?: string; options?: string[] };
  });

  // Namespaces given by path belong to host processes (CRI's pause container): inside the pod's VM every
  // container of the pod shares the guest's own namespace of that type instead.
  const namespaces = Array.isArray(linux.namespaces) ? linux.namespaces : [];
  const guestNamespaces = namespaces.filter((n: unknown) => isObject(n) && typeof n.type === 'string' && n.path === undefined);
  const annotations = isObject(raw.annotations) ? raw.annotations : {};
  const isSandbox = annotations[CRI_CONTAINER_TYPE] === 'sandbox';
  refuseHostOnly(linux, mounts, isSandbox);
  const { namespaces: _n, mountLabel: _m, cgroupsPath: _c, ...linuxRest } = linux;
  const { hooks: _h, ...specRest } = raw;
  let pod: GuestSpec['pod'];
  if (isSandbox) {
    if (raw.hostname !== undefined && typeof raw.hostname !== 'string') throw invalid('hostname must be a string');
    pod = { hostname: raw.hostname || undefined, sysctls: stringRecord(linux.sysctl, 'linux.sysctl'), ...podNetns(namespaces) };
    // The guest gets them (SetSysctls), so the sandbox's own crun has nothing to check them against.
    delete linuxRest.sysctl;
  }
  const spec: OciSpec = {
    ...specRest,
    ociVersion: typeof raw.ociVersion === 'string' ? raw.ociVersion : '1.0.2',
    process,
    mounts,
    linux: { ...linuxRest, namespaces: guestNamespaces },
  };
  return { spec, binds, terminal: process.terminal === true, ...(pod ? { pod } : {}) };
}
