/** Reads a container's cgroup v2 files: stats, OOM counters, process list. Absent controllers read as 0. */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { StatsResponse } from '../protocol/generated/vrun/agent/v1/StatsResponse.js';

async function readText(dir: string, file: string): Promise<string | null> {
  try {
    return await readFile(path.join(dir, file), 'utf8');
  } catch {
    return null;
  }
}

/** "key value" lines -> map. */
function keyValues(text: string | null): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out.set(k, Number(v));
  }
  return out;
}

/** A single number, or 0 for "max"/absent. */
function single(text: string | null): number {
  const t = (text ?? '').trim();
  return /^\d+$/.test(t) ? Number(t) : 0;
}

/** Synchronous: a cgroupfs read is answered by the kernel at once, and this sits on the create/exit path. */
export function oomKillCount(cgroupDir: string): number {
  let text: string | null;
  try {
    text = readFileSync(path.join(cgroupDir, 'memory.events'), 'utf8');
  } catch {
    text = null;
  }
  return keyValues(text).get('oom_kill') ?? 0;
}

export async function cgroupPids(cgroupDir: string): Promise<number[]> {
  const text = await readText(cgroupDir, 'cgroup.procs');
  return (text ?? '').split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
}

export async function cgroupStats(cgroupDir: string): Promise<StatsResponse> {
  const [cpu, memCurrent, memMax, memStat, memEvents, pidsCurrent, pidsMax, io, controllers] = await Promise.all(
    ['cpu.stat', 'memory.current', 'memory.max', 'memory.stat', 'memory.events', 'pids.current', 'pids.max', 'io.stat', 'cgroup.controllers'].map((f) =>
      readText(cgroupDir, f),
    ),
  );
  const cpuKv = keyValues(cpu ?? null);
  const memKv = keyValues(memStat ?? null);
  const events = keyValues(memEvents ?? null);
  const ioTotals = { rbytes: 0, wbytes: 0, rios: 0, wios: 0 };
  for (const line of (io ?? '').split('\n')) {
    for (const part of line.split(/\s+/).slice(1)) {
      const [k, v] = part.split('=');
      if (k && v && k in ioTotals && /^\d+$/.test(v)) ioTotals[k as keyof typeof ioTotals] += Number(v);
    }
  }
  return {
    cpu: {
      usageUsec: cpuKv.get('usage_usec') ?? 0,
      userUsec: cpuKv.get('user_usec') ?? 0,
      systemUsec: cpuKv.get('system_usec') ?? 0,
      nrThrottled: cpuKv.get('nr_throttled') ?? 0,
      throttledUsec: cpuKv.get('throttled_usec') ?? 0,
    },
    memory: {
      currentBytes: single(memCurrent ?? null),
      limitBytes: single(memMax ?? null),
      anonBytes: memKv.get('anon') ?? 0,
      fileBytes: memKv.get('file') ?? 0,
      oomEvents: events.get('oom') ?? 0,
      oomKillEvents: events.get('oom_kill') ?? 0,
    },
    pids: { current: single(pidsCurrent ?? null), limit: single(pidsMax ?? null) },
    io: { readBytes: ioTotals.rbytes, writeBytes: ioTotals.wbytes, readIos: ioTotals.rios, writeIos: ioTotals.wios },
    controllers: (controllers ?? '').trim().split(/\s+/).filter(Boolean),
  };
}
