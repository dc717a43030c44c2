import fs from 'node:fs';
import path from 'node:path';
import { VrunError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { jailerArgs, type JailSpec } from './argv.js';
import { jailerBinary } from './binary.js';
import { createPodCgroups, type PodCgroups } from './cgroups.js';
import { recordJailId, releaseJailId, reserveJailId, type JailId } from './ids.js';

/**
 * Everything one jailed VMM (QEMU, src/vmm/jail/qemu-jail.ts, or the native VMM's process,
 * src/vmm/native-process/) needs around it: its own uid/gid, its host cgroups, the run directory handed over to
 * it, an empty directory for the jail's root, and the jailer's command line.
 */

const NOFILE = 4096;

export interface VmmJailOptions {
  /** Root-owned directory holding the sockets the VMM listens on and connects to; handed to the jail's id. */
  runDir: string;
  /** Files the VMM only reads (kernel, initrd; for the native VMM also its bundle and the addon). */
  files: string[];
  /** Sockets the VMM connects to (virtiofsd's); those outside runDir are bound one by one. */
  sockets: string[];
  /** Whether the VMM opens /dev/kvm (the jail then has it, and the group that may open it). */
  kvm: boolean;
  memoryMiB: number;
  vcpus: number;
  /** The VMM's own memory besides guest RAM, added to the memory cgroup's limit. */
  overheadMiB: number;
  /** Threads the VMM may have (the pids cgroup and RLIMIT_NPROC). */
  pidsMax: number;
  /**
   * The pod's network namespace, which the VMM then runs in instead of a new empty one, and the taps in it the
   * jailer opens for the VMM (it gets fd `fd`; see JailSpec.taps).
   */
  net?: { netns: string; taps: { fd: number; name: string }[] };
  /** The VMM's environment (empty otherwise). */
  env?: Record<string, string>;
  /** fds above stdio passed through to the VMM (besides the taps). */
  keepFds?: number[];
  /** Defaults to `<runDir>.jail`, made here and removed at teardown. */
  root?: string;
  logger?: Logger;
}

export interface VmmJail {
  id: number;
  cgroups: PodCgroups;
  root: string;
  /** The jailer and its arguments to run `program args` with. */
  wrap(program: string, args: string[]): { command: string; args: string[] };
  /** The jailer runs: it holds the id too from now on (it outlives this process if this process crashes). */
  started(jailerPid: number | undefined): void;
  /** After the VMM is gone: cgroups, jail root, id. Idempotent. */
  teardown(): Promise<void>;
}

/** realpath of an existing path, or of the parent for one that does not exist yet (a socket the VMM creates). */
export function canonicalPath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.join(fs.realpathSync(path.dirname(p)), path.basename(p));
  }
}

/** Debian is merged-/usr: /lib, /lib64, /bin are symlinks into /usr, recreated in the jail as they are. */
export function topLevelUsrLinks(): { symlinks: JailSpec['symlinks']; dirs: string[] } {
  const symlinks: NonNullable<JailSpec['symlinks']> = [];
  const dirs: string[] = [];
  for (const name of ['bin', 'sbin', 'lib', 'lib64', 'lib32', 'libx32']) {
    const p = `/${name}`;
    try {
      const st = fs.lstatSync(p);
      if (st.isSymbolicLink()) symlinks.push({ target: fs.readlinkSync(p), link: p });
      else if (st.isDirectory() && name.startsWith('lib')) dirs.push(p);
    } catch {
      // absent
    }
  }
  return { symlinks, dirs };
}

/** /dev/kvm with the group that may open it, when that is not everyone. */
function kvmAccess(): { groups: number[] } {
  const st = fs.statSync('/dev/kvm');
  if ((st.mode & 0o006) === 0o006) return { groups: [] };
  if ((st.mode & 0o060) === 0o060 && st.gid !== 0) return { groups: [st.gid] };
  throw new VrunError(`/dev/kvm (mode ${(st.mode & 0o777).toString(8)}, group ${st.gid}) is not open to a non-root group: the jailed VMM could not use it`);
}

/** Gives `p` to the jail's id with `mode`. */
export function handOver(p: string, id: number, mode: number): void {
  fs.chownSync(p, id, id);
  fs.chmodSync(p, mode);
}

export function makeEmptyRoot(root: string): void {
  try {
    fs.rmdirSync(root); // a crashed launch's leftover (empty: the jail's mounts never reach the host)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.mkdirSync(root, { mode: 0o700 });
}

export function prepareVmmJail(o: VmmJailOptions): VmmJail {
  const binary = jailerBinary();
  const runDir = fs.realpathSync(o.runDir);
  const root = o.root ?? `${runDir}.jail`;
  const kvm = o.kvm ? kvmAccess() : undefined;
  const jid: JailId = reserveJailId();
  let cgroups: PodCgroups | undefined;
  let done: Promise<void> | undefined;
  const teardown = (): Promise<void> =>
    (done ??= (async () => {
      let cgroupsGone = true;
      await cgroups?.remove().catch((err: unknown) => {
        cgroupsGone = false;
        o.logger?.warn({ err: errorMessage(err), dirs: cgroups?.dirs }, 'removing the VMM cgroups failed; the jail id stays reserved until they can be');
      });
      try {
        fs.rmdirSync(root);
      } catch {
        // not made yet, or already gone
      }
      if (cgroupsGone) releaseJailId(jid);
    })());
  try {
    const memoryLimitMiB = o.memoryMiB + o.overheadMiB;
    cgroups = createPodCgroups(`vm-${jid.id}`, { memoryBytes: memoryLimitMiB * 1024 * 1024, pids: o.pidsMax });
    recordJailId(jid, { cgroups: cgroups.dirs });
    handOver(runDir, jid.id, 0o700);
    const rwBinds = [runDir];
    for (const s of o.sockets.map(canonicalPath)) {
      handOver(s, jid.id, 0o600);
      if (!s.startsWith(`${runDir}/`)) rwBinds.push(s);
    }
    makeEmptyRoot(root);
    const usr = topLevelUsrLinks();
    const spec: JailSpec = {
      uid: jid.id,
      gid: jid.id,
      groups: kvm?.groups,
      root,
      roBinds: ['/usr', ...usr.dirs, ...['/etc/ld.so.cache'].filter((f) => fs.existsSync(f)), ...o.files.map((f) => fs.realpathSync(f))],
      rwBinds,
      devs: kvm ? ['kvm'] : [],
      symlinks: usr.symlinks,
      hostname: 'vrun-vmm',
      netns: o.net?.netns ?? 'new',
      taps: o.net?.taps,
      cgroups: cgroups.dirs,
      rlimits: {
        nofile: NOFILE,
        // Counted per uid, and the uid is the pod's own: the same bound as the pids cgroup, without cgroups too.
        nproc: o.pidsMax,
        core: 0,
        // Guest RAM is a memfd the VMM sizes with ftruncate, which RLIMIT_FSIZE bounds: exactly that much.
        fsize: o.memoryMiB * 1024 * 1024,
      },
      env: o.env,
      keepFds: o.keepFds,
    };
    o.logger?.info(
      { jailId: jid.id, root, netns: o.net?.netns ?? 'new', taps: o.net?.taps.map((t) => t.name), cgroupVersion: cgroups.version, cgroups: cgroups.applied, skipped: cgroups.skipped, memoryLimitMiB, pidsMax: o.pidsMax },
      `VMM jailed as uid ${jid.id}; cgroup controllers applied: ${cgroups.applied.join(', ') || 'none'}`,
    );
    return {
      id: jid.id,
      cgroups,
      root,
      wrap: (program, args) => ({ command: binary, args: jailerArgs(spec, fs.realpathSync(program), args) }),
      started: (pid) => {
        if (pid === undefined) return;
        try {
          recordJailId(jid, { holderPids: [pid] });
        } catch (err) {
          o.logger?.warn({ err: errorMessage(err) }, 'recording the jailer as the jail id holder failed');
        }
      },
      teardown,
    };
  } catch (err) {
    void teardown();
    throw err;
  }
}
