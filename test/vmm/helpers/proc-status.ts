import fs from 'node:fs';

/** One field of /proc/PID/status (Uid, Seccomp, NoNewPrivs, CapEff...), as the kernel prints it. */
export function statusField(pid: number, name: string): string {
  const m = new RegExp(`^${name}:[ \\t]*(.*)$`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return (m?.[1] ?? '').trim();
}
