/**
 * What a pod can leave behind on the host, found by its state directory: the processes whose command line
 * names it (VMM, virtiofsd, shim) and the mounts under it. Tests assert both are gone, and clean up with
 * them after a failure.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

export interface NamedProcess {
  pid: number;
  /** The start of its command line, for failure messages. */
  cmd: string;
}

export function processesNaming(marker: string): NamedProcess[] {
  const out: NamedProcess[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.includes(marker)) out.push({ pid: Number(pid), cmd: cmd.replace(/\0/g, ' ').slice(0, 120) });
    } catch {
      // gone
    }
  }
  return out;
}

export function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((mp) => mp.startsWith(dir));
}

/** After a failed test: kills every process naming `dir` and lazily unmounts everything under it. */
export function killAndUnmount(dir: string): void {
  for (const { pid } of processesNaming(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const mp of mountsUnder(dir).reverse()) execFileSync('umount', ['-l', mp]);
}
