import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { VrunError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { findOnPath } from '../../guest-image/host-tools.js';
import { ConsoleLog, GUEST_EXIT_PATTERN } from '../console-log.js';
import { QEMU_BINARY, qemuArgs, type QemuSpec } from './command.js';
import { QmpClient } from './qmp.js';

export interface QemuExit {
  /** 'reboot' = the guest rebooted or powered off (QEMU runs with -no-reboot); 'killed' = QEMU died by a signal. */
  reason: 'reboot' | 'killed' | 'error';
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The status the guest init printed before it ended (VRUN-EXIT status=N), if any. */
  guestStatus?: number;
  panic: boolean;
  /** QEMU's (or its jailer's) stderr, the first 8 KiB. */
  stderr: string;
}

/** Runs QEMU through another program (the jailer): `program args` becomes `command ...`. */
export type QemuWrapper = (program: string, args: string[]) => { command: string; args: string[] };

/**
 * One QEMU process running a vrun guest. The serial console is QEMU's stdout, fed into a ConsoleLog;
 * QMP is available when a socket was asked for.
 */
export class QemuVm {
  readonly console: ConsoleLog;
  readonly exited: Promise<QemuExit>;
  private qmp: QmpClient | undefined;
  private guestStatus: number | undefined;
  private panic = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly spec: QemuSpec,
    consoleLogPath: string | undefined,
    private readonly log?: Logger,
    private readonly wrapped = false,
  ) {
    this.console = new ConsoleLog(consoleLogPath);
    this.console.onLine((line) => {
      const st = GUEST_EXIT_PATTERN.exec(line);
      if (st) this.guestStatus = Number(st[1]);
      if (/Kernel panic - not syncing/.test(line)) this.panic = true;
    });
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => this.console.write(d));
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 8192) stderr += d.toString();
    });
    this.exited = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        const reason: QemuExit['reason'] = signal ? 'killed' : code === 0 ? 'reboot' : 'error';
        this.console.close(signal ? `QEMU killed by ${signal}` : `QEMU exited with ${code}${stderr ? `: ${stderr.trim()}` : ''}`);
        this.qmp?.close();
        this.log?.info({ code, signal, guestStatus: this.guestStatus, panic: this.panic }, 'qemu exited');
        resolve({ reason, code, signal, guestStatus: this.guestStatus, panic: this.panic, stderr: stderr.trim() });
      });
    });
  }

  static start(spec: QemuSpec, opts: { consoleLog?: string; logger?: Logger; binary?: string; wrap?: QemuWrapper } = {}): QemuVm {
    const binary = opts.binary ?? findOnPath(QEMU_BINARY);
    if (!binary) throw new VrunError(`${QEMU_BINARY} not found: install the Debian package "qemu-system-x86"`);
    const run = opts.wrap ? opts.wrap(binary, qemuArgs(spec)) : { command: binary, args: qemuArgs(spec) };
    opts.logger?.debug({ command: run.command, args: run.args }, 'starting qemu');
    const child = spawn(run.command, run.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    return new QemuVm(child, spec, opts.consoleLog, opts.logger, opts.wrap !== undefined);
  }

  /** The process started: QEMU, or its jailer (killing which kills QEMU too). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * QEMU's own pid: the jailer's only child when jailed (undefined until the jailer has forked, and once
   * QEMU is gone).
   */
  vmmPid(): number | undefined {
    const pid = this.child.pid;
    if (!this.wrapped || pid === undefined) return pid;
    try {
      const first = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0];
      return first ? Number(first) : undefined;
    } catch {
      return undefined;
    }
  }

  async qmpClient(): Promise<QmpClient> {
    if (!this.spec.qmpSocket) throw new VrunError('this VM was started without a QMP socket');
    this.qmp ??= await QmpClient.connect(this.spec.qmpSocket);
    return this.qmp;
  }

  /** Ends the VM now (the guest gets no say). Resolves when QEMU is gone. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<QemuExit> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}
