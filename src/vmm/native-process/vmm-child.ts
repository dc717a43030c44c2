import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../../common/log.js';
import { firstChild } from '../../common/proc-children.js';
import { GUEST_EXIT_PATTERN } from '../../guest-image/guest-contract.js';
import type { VmEnd } from '../backend.js';
import { ConsoleLog } from '../console-log.js';
import type { MachineEnd } from '../machine.js';
import { encodeLine, EVENTS_FD, lineSplitter, MAX_EVENT_LINE, parseEvent, type VmmCommand } from './messages.js';
import { nativeVmEnd } from './vm-end.js';

/**
 * The sandbox's side of one native VMM process (vmm-main.ts), run as `command args` (the jailer, or node
 * directly): its console fed into a ConsoleLog, its events parsed (strictly: the process runs guest-driven
 * code), its end in the backends' common words once the process is gone and its console read to the end.
 */

/** How long a diagnose may take before the sandbox stops waiting (the VMM waits up to 2 s for its vCPUs to pause). */
const DIAGNOSE_TIMEOUT_MS = 5000;
/** The VMM's stderr kept for a failure's message. */
const STDERR_KEEP = 8192;
const LOG_LINE_MAX = 2000;

export class VmmChild {
  readonly console: ConsoleLog;
  /** Resolves once the process is gone and its console and events were read to the end. */
  readonly exited: Promise<VmEnd>;
  /** Resolves true once the machine runs, false if the process ended first. */
  readonly started: Promise<boolean>;
  private readonly child: ChildProcess;
  private end: MachineEnd | undefined;
  private guestStatus: number | undefined;
  private stderr = '';
  private nextId = 1;
  private readonly diagnoses = new Map<number, (state: Record<string, unknown>) => void>();

  constructor(command: string, args: string[], opts: { consoleLog?: string; logger?: Logger }) {
    const log = opts.logger;
    this.console = new ConsoleLog(opts.consoleLog);
    this.console.onLine((line) => {
      const m = GUEST_EXIT_PATTERN.exec(line);
      if (m) this.guestStatus = Number(m[1]);
    });
    this.child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
    let onStarted: (ok: boolean) => void = () => undefined;
    this.started = new Promise((r) => (onStarted = r));
    this.child.stdin?.on('error', () => undefined); // a VMM gone before a command: its exit says why
    this.child.stdout?.on('data', (d: Buffer) => this.console.write(d));
    this.child.stderr?.on(
      'data',
      lineSplitter(LOG_LINE_MAX, (line) => {
        if (this.stderr.length < STDERR_KEEP) this.stderr += `${line}\n`;
        if (line.trim()) log?.info({ vmm: line }, 'native VMM process');
      }),
    );
    const events = this.child.stdio[EVENTS_FD] as NodeJS.ReadableStream | null;
    events?.on(
      'data',
      lineSplitter(MAX_EVENT_LINE, (line, cut) => {
        const e = cut ? undefined : parseEvent(line);
        if (!e) {
          log?.warn({ line: line.slice(0, 200) }, 'the native VMM process sent something that is no event');
          return;
        }
        if (e.event === 'started') onStarted(true);
        else if (e.event === 'device-error') log?.error({ err: e.message }, 'native VMM device error');
        else if (e.event === 'end') this.end ??= e.end;
        else this.diagnoses.get(e.id)?.(e.state);
      }),
    );
    this.exited = new Promise((resolve) => {
      let done = false;
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (done) return;
        done = true;
        onStarted(false);
        for (const reply of this.diagnoses.values()) reply({ error: 'the native VMM process is gone' });
        const end = this.vmEnd(code, signal);
        this.console.close(end.message);
        log?.info({ code, signal, end: end.kind, guestStatus: this.guestStatus }, 'native VMM process exited');
        resolve(end);
      };
      this.child.on('error', (err) => {
        this.stderr += `vrun-vmm: ${err.message}\n`;
        // A process that never started has no close to wait for.
        if (this.child.pid === undefined) finish(null, null);
      });
      this.child.on('close', finish);
    });
  }

  /** How it ended: its own `end` event, else the process's exit (a crash, a kill, a jail that failed). */
  private vmEnd(code: number | null, signal: NodeJS.Signals | null): VmEnd {
    if (this.end) return nativeVmEnd(this.end, this.guestStatus);
    const status = this.guestStatus !== undefined ? { guestStatus: this.guestStatus } : {};
    if (signal) return { kind: 'killed', message: `the native VMM process was killed by ${signal}`, signal, ...status };
    const said = this.stderr.split('\n').find((l) => l.startsWith('vrun-jailer: ') || l.startsWith('vrun-vmm: '));
    const what = code === null ? 'could not be started' : `exited with code ${code}`;
    return { kind: 'error', message: `the native VMM process ${what}${said ? ` (${said.slice(0, 500)})` : ''}`, ...(code !== null ? { code } : {}), ...status };
  }

  /** The process started (the jailer when jailed). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** The process's only child (the VMM, under its jailer), while it runs. */
  childPid(): number | undefined {
    const pid = this.child.pid;
    return pid === undefined ? undefined : firstChild(pid);
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  send(command: VmmCommand): void {
    if (this.running && this.child.stdin?.writable) this.child.stdin.write(encodeLine(command));
  }

  diagnose(): Promise<Record<string, unknown>> {
    if (!this.running) return Promise.resolve({ error: 'the native VMM process is gone' });
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => reply({ error: `no answer from the native VMM process in ${DIAGNOSE_TIMEOUT_MS} ms` }), DIAGNOSE_TIMEOUT_MS);
      const reply = (state: Record<string, unknown>) => {
        clearTimeout(timer);
        this.diagnoses.delete(id);
        resolve(state);
      };
      this.diagnoses.set(id, reply);
      this.send({ cmd: 'diagnose', id });
    });
  }

  /** Asks the VM to stop; SIGKILL once `deadlineMs` passed without the process ending. Resolves once gone. */
  async stop(deadlineMs: number, log?: Logger): Promise<VmEnd> {
    this.send({ cmd: 'stop' });
    let timer: NodeJS.Timeout | undefined;
    const gone = await Promise.race([this.exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), deadlineMs)))]);
    clearTimeout(timer);
    if (!gone) {
      log?.error({ waitedMs: deadlineMs }, 'the native VMM process did not stop: killing it');
      this.child.kill('SIGKILL');
    }
    return this.exited;
  }
}

