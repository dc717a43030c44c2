import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { VrunError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { GUEST_EXIT_PATTERN } from '../../guest-image/guest-contract.js';
import { findOnPath } from '../../guest-image/host-tools.js';
import { guestText, type VmEnd } from '../backend.js';
import { ConsoleLog } from '../console-log.js';
import { QEMU_BINARY, qemuArgs, type QemuSpec } from './command.js';
import { QmpClient } from './qmp.js';

/** What QEMU's end tells the host, before it is put in the backends' common words (qemuVmEnd). */
export interface QemuStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The status the guest init printed before it ended (VRUN-EXIT status=N), if any. */
  guestStatus?: number;
  /** The guest kernel's panic line, from "Kernel panic" on, if it printed one. */
  panicLine?: string;
  /** QEMU's (or its jailer's) stderr, the first 8 KiB. */
  stderr: string;
}

export interface QemuExit extends QemuStatus {
  end: VmEnd;
}

const PANIC = /Kernel panic - not syncing/;

/**
 * QEMU's end in the backends' common words. QEMU runs with -no-reboot, so a guest reset (a reboot, and a panic:
 * the guest boots with reboot=t panic=-1) makes it exit with status 0. A poweroff never ends it: microvm
 * without ACPI has no power-off device, so a Linux poweroff only halts the CPUs. So status 0 is a panic if the
 * console showed one, an exit if the init printed its status, and a reboot otherwise.
 */
export function qemuVmEnd(s: QemuStatus): VmEnd {
  const status = s.guestStatus !== undefined ? { guestStatus: s.guestStatus } : {};
  if (s.signal) return { kind: 'killed', message: `QEMU killed by ${s.signal}`, signal: s.signal, ...status };
  if (s.code !== 0) {
    // The jailer's own failures (exit 125) say what went wrong on stderr in one line; QEMU's start-up errors too.
    const said = s.stderr.split('\n').find((l) => l.startsWith('vrun-jailer: ') || /^qemu(-system-[^:]*)?: /.test(l));
    return { kind: 'error', message: `QEMU exited with code ${s.code}${said ? ` (${said})` : ''}`, ...(s.code !== null ? { code: s.code } : {}), ...status };
  }
  if (s.panicLine !== undefined) return { kind: 'panic', message: `guest kernel panic (QEMU): ${guestText(s.panicLine)}`, code: 0, ...status };
  if (s.guestStatus !== undefined) return { kind: 'exit', message: `the guest ended with status ${s.guestStatus} (QEMU)`, code: 0, guestStatus: s.guestStatus };
  return { kind: 'reboot', message: 'the guest rebooted (QEMU)', code: 0 };
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
  private panicLine: string | undefined;

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
      const panic = PANIC.exec(line);
      if (panic && this.panicLine === undefined) this.panicLine = line.slice(panic.index).trim();
    });
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => this.console.write(d));
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 8192) stderr += d.toString();
    });
    this.exited = new Promise((resolve) => {
      child.on('close', (code, signal) => {
        this.console.close(signal ? `QEMU killed by ${signal}` : `QEMU exited with ${code}${stderr ? `: ${stderr.trim()}` : ''}`);
        this.qmp?.close();
        const status: QemuStatus = { code, signal, guestStatus: this.guestStatus, panicLine: this.panicLine, stderr: stderr.trim() };
        const end = qemuVmEnd(status);
        this.log?.info({ code, signal, guestStatus: this.guestStatus, end: end.kind }, 'qemu exited');
        resolve({ ...status, end });
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
