import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { VrunError, MissingDependencyError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';

export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

/**
 * One virtiofsd child serving a host directory to the guest over vhost-user. It runs in its own mount, pid and
 * net namespaces, pivot_root'ed into the shared directory, under its own seccomp filter (`sandbox=namespace`),
 * so a guest that subverts it reaches only that directory. It keeps only the capabilities a file server
 * needs: without CAP_MKNOD the guest cannot make device nodes on the host, without CAP_SETFCAP it cannot give
 * files capabilities; trusted.* xattrs need CAP_SYS_ADMIN, which it never had.
 */
const SERVER_OPTIONS = ['sandbox=namespace', 'cache=auto', 'xattr', 'modcaps=-mknod:-setfcap'];
export class Virtiofsd {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stderr = '';

  private constructor(
    private readonly child: ChildProcess,
    readonly socketPath: string,
    readonly sharedDir: string,
  ) {
    child.stderr?.on('data', (d: Buffer) => {
      if (this.stderr.length < 16384) this.stderr += d.toString();
    });
    this.exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  }

  /**
   * Debian's virtiofsd (QEMU 7.2) has no read-only mode: read-only shares are enforced by the guest's
   * mount and, for hostile guests, by sharing a read-only bind mount (the caller's job).
   */
  static async start(opts: { socketPath: string; sharedDir: string; logger?: Logger; binary?: string; timeoutMs?: number }): Promise<Virtiofsd> {
    const binary = opts.binary ?? VIRTIOFSD;
    if (!existsSync(binary)) throw new MissingDependencyError(`virtiofsd (${binary})`, 'qemu-system-common');
    if (!existsSync(opts.sharedDir)) throw new VrunError(`shared directory ${opts.sharedDir} does not exist`);
    await rm(opts.socketPath, { force: true });
    const args = [`--socket-path=${opts.socketPath}`, '-o', `source=${opts.sharedDir}`, ...SERVER_OPTIONS.flatMap((o) => ['-o', o])];
    opts.logger?.debug({ binary, args }, 'starting virtiofsd');
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const d = new Virtiofsd(child, opts.socketPath, opts.sharedDir);
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    let done = false;
    void d.exited.then(() => (done = true));
    while (!existsSync(opts.socketPath)) {
      if (done) throw new VrunError(`virtiofsd for ${opts.sharedDir} exited at start: ${d.stderr.trim() || 'no message'}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new VrunError(`virtiofsd for ${opts.sharedDir} did not create its socket ${opts.socketPath} in time`);
      }
      await new Promise((r) => setTimeout(r, 20));
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
    await rm(this.socketPath, { force: true });
  }
}
