import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type ErrorKind, VrunError, errorMessage, isErrorKind } from '../common/errors.js';
import { vrunRunDir } from '../common/paths.js';
import type { RunConfig } from './run-config.js';

/**
 * A sandbox's record on disk: /run/vrun/<id>/state.json. The sandbox process is its only writer while it
 * lives; the CLI writes it before the sandbox process starts and after it is gone (to mark a crash).
 * Writes go to a temporary file renamed over the old one, so a reader never sees half a record.
 */
export type SandboxStatus = 'creating' | 'running' | 'exited' | 'failed';

export interface SandboxPids {
  sandbox?: number;
  vmm?: number;
  virtiofsd?: number[];
}

export interface SandboxState {
  version: 1;
  id: string;
  name: string;
  image: string;
  createdAt: string;
  /** The host's boot id when the sandbox was made: a different one now means the host rebooted. */
  hostBootId: string;
  status: SandboxStatus;
  config: RunConfig;
  pids: SandboxPids;
  backend?: string;
  startedAt?: string;
  finishedAt?: string;
  exitCode?: number;
  oomKilled?: boolean;
  /** Why the sandbox failed, in one line. */
  error?: string;
  /** What kind of failure `error` is: the CLI's exit code follows it (127 for a missing command). */
  errorKind?: ErrorKind;
  /** Milliseconds spent in each start-up and teardown phase. */
  phases?: Record<string, number>;
  guest?: { kernel?: string; cpus?: number; memTotalBytes?: number };
  /** The container's addresses on its network, IPv4 first (none with --network none). */
  ips?: string[];
}

export const ID_RE = /^[a-f0-9]{32}$/;

export function newSandboxId(): string {
  return randomBytes(16).toString('hex');
}

export function shortId(id: string): string {
  return id.slice(0, 12);
}

export function hostBootId(): string {
  return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
}

/** Paths of one sandbox's state directory. Socket paths stay short: sun_path holds 108 bytes. */
export function sandboxPaths(id: string, runDir = vrunRunDir()) {
  const dir = path.join(runDir, id);
  return {
    dir,
    state: path.join(dir, 'state.json'),
    log: path.join(dir, 'sandbox.log'),
    console: path.join(dir, 'console.log'),
    containerLog: path.join(dir, 'container.log'),
    control: path.join(dir, 'ctl.sock'),
    runDir: path.join(dir, 'vm'),
    agent: path.join(dir, 'vm', 'agent.sock'),
    fsSocket: (i: number) => path.join(dir, 'vm', `fs${i}.sock`),
  };
}

export type SandboxPaths = ReturnType<typeof sandboxPaths>;

export function namesDir(runDir = vrunRunDir()): string {
  return path.join(runDir, 'names');
}

export async function writeState(state: SandboxState, runDir = vrunRunDir()): Promise<void> {
  const p = sandboxPaths(state.id, runDir);
  const tmp = `${p.state}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, p.state);
}

function isStatus(v: unknown): v is SandboxStatus {
  return v === 'creating' || v === 'running' || v === 'exited' || v === 'failed';
}

export async function readState(id: string, runDir = vrunRunDir()): Promise<SandboxState | undefined> {
  let text: string;
  try {
    text = await readFile(sandboxPaths(id, runDir).state, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new VrunError(`state of sandbox ${shortId(id)} is corrupt: ${errorMessage(err)}`);
  }
  const s = parsed as Partial<SandboxState>;
  if (typeof s !== 'object' || s === null || s.version !== 1 || s.id !== id || !isStatus(s.status) || typeof s.name !== 'string') {
    throw new VrunError(`state of sandbox ${shortId(id)} is corrupt: unexpected shape`);
  }
  if (s.errorKind !== undefined && !isErrorKind(s.errorKind)) delete s.errorKind;
  return s as SandboxState;
}

/** Every sandbox id with a state directory (including ones whose state is not written yet). */
export async function listSandboxIds(runDir = vrunRunDir()): Promise<string[]> {
  let entries: string[];
  try {
    entries = await readdir(runDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return entries.filter((e) => ID_RE.test(e));
}

export async function ensureRunDir(runDir = vrunRunDir()): Promise<void> {
  await mkdir(namesDir(runDir), { recursive: true, mode: 0o700 });
}
