import type { MachineEnd } from '../machine.js';

/**
 * What the jailed native VMM process and the sandbox say to each other, one JSON object a line: commands on
 * the VMM's stdin, events on its fd 3 (its stdout carries the serial console's bytes, its stderr its log).
 * The VMM process runs guest-driven device models: should the guest take it over, everything it says is
 * hostile to the sandbox, so events are parsed strictly, with bounded lines and strings.
 */

/** fd of the events in the VMM process (stdin, stdout and stderr are 0-2; taps come after it). */
export const EVENTS_FD = 3;
/** The VMM's fd for the tap of its NIC `i`. */
export const TAP_FD_BASE = 4;

export type VmmCommand = { cmd: 'stop' } | { cmd: 'diagnose'; id: number };

export type VmmEvent =
  /** The machine is made (devices, sockets) and its vCPUs run. */
  | { event: 'started' }
  | { event: 'device-error'; message: string }
  /** How the guest ended; the process exits right after. */
  | { event: 'end'; end: MachineEnd }
  | { event: 'diagnose'; id: number; state: Record<string, unknown> };

/** A diagnose reply is the largest event (the vCPUs, the exit counters, each device's queues). */
export const MAX_EVENT_LINE = 256 * 1024;
export const MAX_COMMAND_LINE = 1024;
const MAX_TEXT = 1000;

/** One JSON line. */
export function encodeLine(message: VmmCommand | VmmEvent): string {
  return `${JSON.stringify(message)}\n`;
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' ? v.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_TEXT) : undefined;
}

function object(line: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function machineEnd(v: unknown): MachineEnd | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const e = v as Record<string, unknown>;
  switch (e.kind) {
    case 'exit':
      return typeof e.status === 'number' && Number.isInteger(e.status) && e.status >= 0 && e.status <= 255 ? { kind: 'exit', status: e.status } : undefined;
    case 'poweroff':
    case 'reboot':
    case 'stopped':
      return { kind: e.kind };
    case 'panic': {
      const line = text(e.line);
      return line === undefined ? undefined : { kind: 'panic', line };
    }
    case 'error': {
      const message = text(e.message);
      return message === undefined ? undefined : { kind: 'error', message };
    }
    default:
      return undefined;
  }
}

/** An event line from the VMM process, or undefined for anything that is not one exactly. */
export function parseEvent(line: string): VmmEvent | undefined {
  if (line.length > MAX_EVENT_LINE) return undefined;
  const o = object(line);
  switch (o?.event) {
    case 'started':
      return { event: 'started' };
    case 'device-error': {
      const message = text(o.message);
      return message === undefined ? undefined : { event: 'device-error', message };
    }
    case 'end': {
      const end = machineEnd(o.end);
      return end && { event: 'end', end };
    }
    case 'diagnose':
      return Number.isSafeInteger(o.id) && typeof o.state === 'object' && o.state !== null && !Array.isArray(o.state)
        ? { event: 'diagnose', id: o.id as number, state: o.state as Record<string, unknown> }
        : undefined;
    default:
      return undefined;
  }
}

/** A command line from the sandbox, or undefined. */
export function parseCommand(line: string): VmmCommand | undefined {
  if (line.length > MAX_COMMAND_LINE) return undefined;
  const o = object(line);
  if (o?.cmd === 'stop') return { cmd: 'stop' };
  if (o?.cmd === 'diagnose' && Number.isSafeInteger(o.id)) return { cmd: 'diagnose', id: o.id as number };
  return undefined;
}

/**
 * Splits a byte stream into lines, none longer than `max` (a longer one is passed on cut, flagged, and its
 * rest skipped up to the next newline).
 */
export function lineSplitter(max: number, onLine: (line: string, cut: boolean) => void): (chunk: Buffer) => void {
  let partial = '';
  let skipping = false;
  return (chunk) => {
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) {
      if (skipping) skipping = false;
      else onLine(p, false);
    }
    if (partial.length > max) {
      if (!skipping) onLine(partial.slice(0, max), true);
      skipping = true;
      partial = '';
    }
  };
}
