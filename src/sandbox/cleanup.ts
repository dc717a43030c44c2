import { readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { SandboxPids } from './state.js';

/**
 * Undoing a sandbox whatever state it was left in: its processes (only ones that still carry the sandbox's
 * state directory on their command line, so a recycled pid is never killed), mounts under its directory,
 * and the directory itself.
 */
export function processBelongsTo(pid: number, marker: string): boolean {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return false;
  }
}

export function allPids(pids: SandboxPids): number[] {
  return [pids.sandbox, pids.vmm, ...(pids.virtiofsd ?? [])].filter((p): p is number => typeof p === 'number');
}

/** SIGKILLs every listed process that still belongs to the sandbox and waits until they are gone. */
export async function killSandboxProcesses(pids: number[], marker: string, timeoutMs = 5000): Promise<number[]> {
  const mine = pids.filter((p) => processBelongsTo(p, marker));
  for (const p of mine) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (mine.some((p) => isAlive(p)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return mine.filter((p) => isAlive(p));
}

/** Alive and not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Mount points at or under `dir`, deepest first (from /proc/self/mountinfo, octal escapes decoded). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const prefix = path.resolve(dir);
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (!field) continue;
    const mp = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (mp === prefix || mp.startsWith(`${prefix}/`)) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

export async function unmountUnder(dir: string): Promise<void> {
  const { umount } = await import('./host-mount.js');
  for (const mp of await mountsUnder(dir)) {
    await umount(mp, { detach: true }).catch(() => undefined);
  }
}

/** Kills, unmounts and deletes; safe to repeat. Returns a problem description or undefined when clean. */
export async function removeSandboxDir(dir: string, pids: number[]): Promise<string | undefined> {
  const survivors = await killSandboxProcesses(pids, dir);
  await unmountUnder(dir);
  const leftMounts = await mountsUnder(dir);
  if (survivors.length > 0 || leftMounts.length > 0) {
    return `could not clean up ${dir}: ${survivors.length > 0 ? `processes ${survivors.join(', ')} did not die` : ''}${leftMounts.length > 0 ? ` mounts remain: ${leftMounts.join(', ')}` : ''}`;
  }
  await rm(dir, { recursive: true, force: true });
  return undefined;
}
