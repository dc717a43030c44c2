import { spawn, type ChildProcess } from 'node:child_process';
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
}

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
        resolve({ reason, code, signal, guestStatus: this.guestStatus, panic: this.panic });
      });
    });
  }

  static start(spec: QemuSpec, opts: { consoleLog?: string; logger?: Logger; binary?: string } = {}): QemuVm {
    const binary = opts.binary ?? findOnPath(QEMU_BINARY);
    if (!binary) throw new VrunError(`${QEMU_BINARY} not found: install the Debian package "qemu-system-x86"`);
    const args = qemuArgs(spec);
    opts.logger?.debug({ binary, args }, 'starting qemu');
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    return new QemuVm(child, spec, opts.consoleLog, opts.logger);
  }

  get pid(): number | undefined {
    return this.child.pid;
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
