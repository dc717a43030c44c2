import { readdirSync, readFileSync } from 'node:fs';

/**
 * The first child of `pid` (a jailer's only child is the process it started): from /proc/PID/task/PID/children,
 * or, on kernels without CONFIG_PROC_CHILDREN (the KVM lab's L1), by scanning /proc for a process whose parent
 * is `pid`. Undefined when it has none (yet, or any more).
 */
export function firstChild(pid: number): number | undefined {
  try {
    const first = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0];
    return first ? Number(first) : undefined;
  } catch {
    // no such file: look at the parents
  }
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      // The fourth field, after the command in parentheses (which may hold spaces and parentheses itself).
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) return Number(d);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}
