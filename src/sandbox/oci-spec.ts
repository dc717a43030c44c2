/**
 * Builds the OCI runtime spec (config.json) for a container from its image config and the user's
 * options, the way Docker would: image Entrypoint + Cmd, image Env overlaid by -e, Docker's default
 * capability set, the usual /proc, /dev, /sys mounts, and cgroup v2 resources. The spec is consumed by
 * crun inside the guest, so host-specific parts (network namespace paths, host cgroup paths) stay out.
 */
import type { OciSpec } from '../common/oci-spec.js';

export interface ImageRuntimeConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
}

export interface ContainerOptions {
  /** Replaces the image's Cmd (arguments after the image name). */
  args?: string[];
  /** Replaces the image's Entrypoint; '' clears it. */
  entrypoint?: string;
  env?: string[];
  workdir?: string;
  user?: { uid: number; gid: number; additionalGids?: number[] };
  terminal?: boolean;
  readonlyRootfs?: boolean;
  hostname?: string;
  memoryBytes?: number;
  /** CPU limit in CPUs (e.g. 1.5). */
  cpus?: number;
  pidsLimit?: number;
  /** Bind mounts from paths inside the guest (shares) into the container. */
  mounts?: { source: string; destination: string; readonly: boolean }[];
  /**
   * A network namespace of the container's own (only lo), for --network none; otherwise the container uses
   * the guest's, where the pod's NICs are.
   */
  ownNetwork?: boolean;
}

/** Docker's default capability set for containers. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Environment merge: later entries override earlier ones by name; order of first appearance is kept. */
export function mergeEnv(...lists: (string[] | null | undefined)[]): string[] {
  const byName = new Map<string, string>();
  for (const list of lists) {
    for (const entry of list ?? []) {
      const eq = entry.indexOf('=');
      const name = eq < 0 ? entry : entry.slice(0, eq);
      byName.set(name, entry);
    }
  }
  return [...byName.values()];
}

export function processArgs(image: ImageRuntimeConfig, opts: Pick<ContainerOptions, 'args' | 'entrypoint'>): string[] {
  const entrypoint = opts.entrypoint !== undefined ? (opts.entrypoint === '' ? [] : [opts.entrypoint]) : (image.Entrypoint ?? []);
  // Docker: an explicit --entrypoint drops the image's Cmd too.
  const cmd = opts.args && opts.args.length > 0 ? opts.args : opts.entrypoint !== undefined ? [] : (image.Cmd ?? []);
  return [...entrypoint, ...cmd];
}

/** cgroup v2 limits, with the device allow-list crun applies. */
interface Resources {
  devices: { allow: boolean; access: string; type?: string; major?: number; minor?: number }[];
  memory?: { limit: number; swap?: number };
  cpu?: { quota: number; period: number };
  pids?: { limit: number };
}

/** The spec, with every field this builder sets typed as it sets it. */
export function buildSpec(image: ImageRuntimeConfig, opts: ContainerOptions, rootfsPath = 'rootfs') {
  const args = processArgs(image, opts);
  const env = mergeEnv([DEFAULT_PATH], image.Env, opts.terminal ? ['TERM=xterm'] : [], opts.env);
  const caps = [...DEFAULT_CAPABILITIES];
  const resources: Resources = { devices: [{ allow: false, access: 'rwm' }] };
  if (opts.memoryBytes !== undefined) resources.memory = { limit: opts.memoryBytes, swap: opts.memoryBytes };
  if (opts.cpus !== undefined) resources.cpu = { quota: Math.round(opts.cpus * 100_000), period: 100_000 };
  if (opts.pidsLimit !== undefined) resources.pids = { limit: opts.pidsLimit };
  // crun's default allow-list for /dev/null, zero, full, random, urandom, tty, ptmx and pts.
  for (const [major, minor] of [
    [1, 3],
    [1, 5],
    [1, 7],
    [1, 8],
    [1, 9],
    [5, 0],
    [5, 2],
  ] as const) {
    resources.devices.push({ allow: true, type: 'c', major, minor, access: 'rwm' });
  }
  resources.devices.push({ allow: true, type: 'c', major: 136, access: 'rwm' });
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: Boolean(opts.terminal),
      user: opts.user ?? { uid: 0, gid: 0 },
      args,
      env,
      cwd: opts.workdir ?? (image.WorkingDir || '/'),
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1048576 }],
      noNewPrivileges: false,
    },
    root: { path: rootfsPath, readonly: Boolean(opts.readonlyRootfs) },
    hostname: opts.hostname ?? 'vrun',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
      ...(opts.mounts ?? []).map((m) => ({
        destination: m.destination,
        type: 'bind',
        source: m.source,
        options: ['rbind', m.readonly ? 'ro' : 'rw'],
      })),
    ],
    linux: {
      resources,
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }, ...(opts.ownNetwork ? [{ type: 'network' }] : [])],
      maskedPaths: ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware'],
      readonlyPaths: ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  } satisfies OciSpec;
}
