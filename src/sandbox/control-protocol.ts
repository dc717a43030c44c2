import type net from 'node:net';
import { type ErrorKind, VrunError } from '../common/errors.js';

/**
 * The CLI -> sandbox control socket (ctl.sock in the state directory). Each connection carries one request:
 * a JSON line. Simple requests get one JSON line back; `attach` and `exec` switch the connection to frames
 * (frames.ts) after the request line.
 */
export type ControlRequest =
  /** `size`: the client's terminal (-t), applied before the start so the process sees it from its first instruction. */
  | { op: 'attach'; start: boolean; stdin: boolean; size?: TerminalSize }
  | { op: 'start' }
  | { op: 'exec'; args: string[]; env: string[]; workdir?: string; user?: string; tty: boolean; stdin: boolean; size?: TerminalSize }
  | { op: 'kill'; signal: string }
  | { op: 'stop'; timeoutS: number }
  | { op: 'stats' };

/** A failure's `kind` lets the CLI exit as Docker would (127 for a missing command) without reading `error`. */
export type ControlReply = { ok: true; value?: unknown } | { ok: false; error: string; kind?: ErrorKind };

/**
 * `stop`'s deadline, the same on both ends: the sandbox waits `timeoutS`, sends SIGKILL, gives the guest
 * STOP_KILL_GRACE_MS to confirm, then kills the VM (a teardown bounded by STOP_TEARDOWN_MS). The CLI waits for
 * the reply until stopReplyDeadlineMs(timeoutS) and then kills the sandbox's processes itself, as `rm -f` does.
 */
export const STOP_KILL_GRACE_MS = 5_000;
export const STOP_TEARDOWN_MS = 10_000;
const STOP_REPLY_SLACK_MS = 2_000;

export function stopReplyDeadlineMs(timeoutS: number): number {
  return timeoutS * 1000 + STOP_KILL_GRACE_MS + STOP_TEARDOWN_MS + STOP_REPLY_SLACK_MS;
}

/** The error frame's message for a client dropped because it did not read the output (see ControlServer). */
export function slowClientReason(backlogLimit: number): string {
  return `this client was disconnected: it did not read the container's output fast enough (over ${Math.round((backlogLimit / 2 ** 20) * 10) / 10} MiB waiting); the container keeps running, and \`vrun logs\` has its output`;
}

/** What the error frame's `reason` says for a dropped slow client (the client tells it from other failures). */
export const SLOW_CLIENT = 'slow-client';

const MAX_REQUEST = 256 * 1024;

function strings(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || v.length > 4096 || !v.every((s) => typeof s === 'string')) throw new VrunError(`${what} must be a list of strings`);
  return v as string[];
}

function optString(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new VrunError(`${what} must be a string`);
  return v;
}

export interface TerminalSize {
  rows: number;
  cols: number;
}

/** A window size a client sent, or undefined unless both sides are whole numbers in 1..9999. */
export function terminalSize(v: unknown): TerminalSize | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const { rows, cols } = v as Record<string, unknown>;
  const ok = (n: unknown): n is number => Number.isInteger(n) && (n as number) > 0 && (n as number) < 10000;
  return ok(rows) && ok(cols) ? { rows, cols } : undefined;
}

export function parseControlRequest(line: string): ControlRequest {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new VrunError('control request is not JSON');
  }
  if (typeof v !== 'object' || v === null) throw new VrunError('control request is not an object');
  const r = v as Record<string, unknown>;
  switch (r.op) {
    case 'attach': {
      const size = terminalSize(r.size);
      return { op: 'attach', start: r.start === true, stdin: r.stdin === true, ...(size ? { size } : {}) };
    }
    case 'start':
      return { op: 'start' };
    case 'exec': {
      const size = terminalSize(r.size);
      return {
        op: 'exec',
        args: strings(r.args, 'exec args'),
        env: strings(r.env ?? [], 'exec env'),
        workdir: optString(r.workdir, 'exec workdir'),
        user: optString(r.user, 'exec user'),
        tty: r.tty === true,
        stdin: r.stdin === true,
        ...(size ? { size } : {}),
      };
    }
    case 'kill': {
      const signal = optString(r.signal, 'signal') ?? 'SIGKILL';
      if (!/^(SIG)?[A-Z0-9+-]{1,12}$|^\d{1,2}$/.test(signal)) throw new VrunError(`invalid signal "${signal.slice(0, 20)}"`);
      return { op: 'kill', signal };
    }
    case 'stop': {
      const t = typeof r.timeoutS === 'number' && Number.isFinite(r.timeoutS) && r.timeoutS >= 0 ? Math.min(r.timeoutS, 3600) : 10;
      return { op: 'stop', timeoutS: t };
    }
    case 'stats':
      return { op: 'stats' };
    default:
      throw new VrunError(`unknown control request "${String(r.op).slice(0, 40)}"`);
  }
}

/**
 * Reads the first line of a connection; any bytes after it are handed back (they are the first frames).
 * Stops listening for 'data' so the caller can attach its own handler without losing bytes.
 */
export function readRequestLine(sock: net.Socket, timeoutMs = 30_000): Promise<{ line: string; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new VrunError('control request timed out')), timeoutMs);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const nl = buf.indexOf(0x0a);
      if (nl >= 0) {
        sock.pause();
        finish(undefined, { line: buf.subarray(0, nl).toString('utf8'), rest: buf.subarray(nl + 1) });
      } else if (buf.length > MAX_REQUEST) finish(new VrunError('control request too long'));
    };
    const onEnd = () => finish(new VrunError('connection closed before a request line'));
    const finish = (err?: Error, value?: { line: string; rest: Buffer }) => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onEnd);
      if (err) reject(err);
      else resolve(value as { line: string; rest: Buffer });
    };
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('error', onEnd);
  });
}
