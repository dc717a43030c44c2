import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, realpathSync, rmdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { VrunError, MissingDependencyError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { jailerArgs, type JailSpec } from '../jail/argv.js';
import { jailerBinary } from '../jail/binary.js';
import { createIdMap, idmapRefusal, type IdMap } from '../jail/idmap.js';
import { makeEmptyRoot, topLevelUsrLinks } from '../jail/qemu-jail.js';

export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

/**
 * One virtiofsd child serving a host directory to the guest over vhost-user, confined twice:
 *
 * - by vrun-jailer: a user namespace whose uid/gid 0 is the pod's first host id (src/vmm/jail/idmap.ts), so
 *   virtiofsd runs as that non-root host uid with no capability in the host's namespace, in a jail root
 *   holding /usr, a fresh /proc and the share, in its own mount, pid, ipc, uts and net namespaces. The share
 *   is mounted id-mapped with the same mapping: host-owned files keep their owners (root stays root) in the
 *   guest, and what the guest makes as uid N is owned by N on disk. The jailer creates the vhost-user socket
 *   (virtiofsd gets it as an fd): virtiofsd, unmapped host root to itself, cannot write the pod's 0700
 *   run directory;
 * - by itself (`sandbox=namespace`): new mount, pid and net namespaces inside the jail, pivot_root into the
 *   share, its seccomp filter, and only the capabilities (in its namespace) a file server needs: without
 *   CAP_MKNOD the guest cannot make device nodes, without CAP_SETFCAP it cannot give files capabilities;
 *   trusted.* xattrs need CAP_SYS_ADMIN, which it drops.
 *
 * Where the kernel cannot id-map the share (Linux before 6.3 for tmpfs), only the second holds: virtiofsd runs
 * as root, as before vrun had the jail (and as Kata's does), and says so in a warning.
 */
const SERVER_OPTIONS = ['sandbox=namespace', 'cache=auto', 'xattr', 'modcaps=-mknod:-setfcap'];
/** virtiofsd's command line around how it gets its socket (a path it makes, or an fd the jailer made). */
function serverArgs(socket: string, sharedDir: string): string[] {
  return [socket, '-o', `source=${sharedDir}`, ...SERVER_OPTIONS.flatMap((o) => ['-o', o])];
}
/** Where the jailer puts the listening socket in virtiofsd (`--fd=`). */
const SOCKET_FD = 3;

/** The jail: what virtiofsd needs to run, the share, nothing else of the host. */
function jailSpec(root: string, usernsFd: number, sharedDir: string, socketPath: string, mapShare: boolean): JailSpec {
  const usr = topLevelUsrLinks();
  return {
    usernsFd,
    root,
    roBinds: ['/usr', ...usr.dirs, ...['/etc/ld.so.cache'].filter((f) => existsSync(f))],
    // A share already mounted id-mapped (a pod's share tree, with `map`) is bound as it is; anything else is
    // id-mapped by the jailer. bindInto keeps a read-only share read-only.
    rwBinds: mapShare ? [] : [sharedDir],
    idmapBinds: mapShare ? [sharedDir] : [],
    symlinks: usr.symlinks,
    // virtiofsd mounts a /proc of its own pid namespace; the kernel allows that only where a proc is visible.
    proc: true,
    hostname: 'vrun-fsd',
    netns: 'new',
    listens: [{ fd: SOCKET_FD, path: socketPath }],
    rlimits: { core: 0 },
  };
}
export class Virtiofsd {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly socketPath: string,
    readonly sharedDir: string,
    /** The jail root (removed at stop; none for a virtiofsd run as root) and the mapping made for it alone. */
    private readonly jail: { root?: string; ownMap?: IdMap },
    /** Host uid virtiofsd runs as. */
    readonly hostUid: number,
    /** Why it runs as root (the kernel could not id-map the share); none when it runs in a user namespace. */
    readonly unmapped?: string,
  ) {
    child.stderr?.on('data', (d: Buffer) => {
      if (this.stderr.length < 16384) this.stderr += d.toString();
    });
    this.exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  }

  /**
   * Debian's virtiofsd (QEMU 7.2) has no read-only mode: read-only shares are enforced by the guest's
   * mount and, for hostile guests, by sharing a read-only bind mount (the caller's job).
   *
   * `idmap`: the mapping `sharedDir` is already mounted id-mapped with (a pod's share tree, see GuestShare);
   * virtiofsd then runs with it. `unmapped`: why `sharedDir` is mounted without one (a kernel that cannot
   * id-map it); virtiofsd then runs as root, unjailed, in its own sandbox alone. With neither, virtiofsd gets
   * a mapping of its own and the jailer id-maps `sharedDir` (and the mounts under it, whose filesystems must
   * all support id-mapped mounts), or, if this kernel cannot id-map it, runs as root as with `unmapped`.
   */
  static async start(opts: {
    socketPath: string;
    sharedDir: string;
    idmap?: IdMap;
    unmapped?: string;
    logger?: Logger;
    binary?: string;
    timeoutMs?: number;
  }): Promise<Virtiofsd> {
    if (!existsSync(opts.binary ?? VIRTIOFSD)) throw new MissingDependencyError(`virtiofsd (${opts.binary ?? VIRTIOFSD})`, 'qemu-system-common');
    // The jail mirrors host paths, canonical ones.
    const binary = realpathSync(opts.binary ?? VIRTIOFSD);
    if (!existsSync(opts.sharedDir)) throw new VrunError(`shared directory ${opts.sharedDir} does not exist`);
    const sharedDir = realpathSync(opts.sharedDir);
    const socketPath = path.join(realpathSync(path.dirname(opts.socketPath)), path.basename(opts.socketPath));
    await rm(socketPath, { force: true });
    let ownMap = opts.idmap || opts.unmapped ? undefined : createIdMap();
    let unmapped = opts.unmapped;
    if (ownMap) {
      unmapped = idmapRefusal(ownMap, sharedDir);
      if (unmapped) {
        ownMap.release();
        ownMap = undefined;
      }
    }
    const map = opts.idmap ?? ownMap;
    if (!map) {
      opts.logger?.warn({ sharedDir, reason: unmapped }, 'virtiofsd runs as root, not in a user namespace: this kernel cannot id-map the share');
      const args = serverArgs(`--socket-path=${socketPath}`, sharedDir);
      opts.logger?.debug({ binary, args }, 'starting virtiofsd');
      const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      return Virtiofsd.started(new Virtiofsd(child, socketPath, sharedDir, {}, 0, unmapped ?? 'no mapping'), opts.timeoutMs);
    }
    const jailer = jailerBinary();
    const root = `${path.dirname(socketPath)}.${path.basename(socketPath)}.jail`;
    let child: ChildProcess;
    try {
      makeEmptyRoot(root);
      // libuv leaves an fd passed at its own number close-on-exec: put the namespace on another one.
      const nsFd = map.usernsFd === 4 ? 5 : 4;
      const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'ignore', 'pipe'];
      while (stdio.length < nsFd) stdio.push('ignore');
      stdio.push(map.usernsFd);
      const args = [...serverArgs(`--fd=${SOCKET_FD}`, sharedDir), '--rlimit-nofile=0'];
      const jargs = jailerArgs(jailSpec(root, nsFd, sharedDir, socketPath, opts.idmap === undefined), binary, args);
      opts.logger?.debug({ jailer, args: jargs, hostUid: map.base }, 'starting virtiofsd');
      child = spawn(jailer, jargs, { stdio });
    } catch (err) {
      ownMap?.release();
      try {
        rmdirSync(root);
      } catch {
        // not made
      }
      throw err;
    }
    map.held(child.pid);
    return Virtiofsd.started(new Virtiofsd(child, socketPath, sharedDir, { root, ownMap }, map.base), opts.timeoutMs);
  }

  /** Once its socket is there (the jailer publishes it only when the jail is built): serving. */
  private static async started(d: Virtiofsd, timeoutMs = 10_000): Promise<Virtiofsd> {
    const deadline = Date.now() + timeoutMs;
    let done = false;
    void d.exited.then(() => (done = true));
    while (!existsSync(d.socketPath)) {
      if (done) {
        await d.cleanup();
        throw new VrunError(`virtiofsd for ${d.sharedDir} exited at start: ${d.stderr.trim() || 'no message'}`);
      }
      if (Date.now() > deadline) {
        d.child.kill('SIGKILL');
        await d.exited;
        await d.cleanup();
        throw new VrunError(`virtiofsd for ${d.sharedDir} did not create its socket ${d.socketPath} in time`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    return d;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get errorOutput(): string {
    return this.stderr.trim();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
    await this.cleanup();
  }

  /** Once the jailer is gone: its socket, its (empty) jail root, a mapping of its own. */
  private async cleanup(): Promise<void> {
    await rm(this.socketPath, { force: true });
    try {
      if (this.jail.root) rmdirSync(this.jail.root);
    } catch {
      // already gone
    }
    this.jail.ownMap?.release();
  }
}
