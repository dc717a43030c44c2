import fs from 'node:fs';

/** One field of /proc/PID/status (Uid, Seccomp, NoNewPrivs, CapEff...), as the kernel prints it. */
export function statusField(pid: number, name: string): string {
  const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return (m?.[1] ?? '').trim();
}

/** The pids whose parent is `pid` (from every process's status: a pid namespace's init included). */
export function childrenOf(pid: number): number[] {
  return fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return statusField(Number(d), 'PPid') === String(pid);
      } catch {
        return false;
      }
    })
    .map(Number);
}
