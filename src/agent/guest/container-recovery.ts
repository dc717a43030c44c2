/**
 * A container of an earlier agent process (restarted, or crashed), rebuilt from its bundle and crun's state.
 * What died with that process stays lost: the stdio of its processes, and the exit statuses of processes it
 * had started (they are no longer our children: their wait reports 255, "status unknown").
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { hasHooks, parseJsonObject } from './bundle-spec.js';
import { oomKillCount } from './cgroup-stats.js';
import { EXIT_UNKNOWN, type Container, type ContainerState, type Proc } from './container-state.js';
import type { WaitResult } from '../protocol/process.js';
import type { CrunRunner } from './crun.js';
import { ProcessIo } from './process-io.js';
import { isSafeId } from './request-checks.js';

/** `track` follows a live process to its exit. */
export async function recoverContainer(bundle: string, id: string, cgroupRoot: string, crun: CrunRunner, track: (c: Container, p: Proc) => Promise<WaitResult>): Promise<Container> {
  const spec = parseJsonObject('config.json', readFileSync(path.join(bundle, 'config.json'), 'utf8'));
  const state = parseJsonObject('crun state', await crun.run(['state', id]));
  const status = state.status;
  if (status !== 'created' && status !== 'running' && status !== 'paused' && status !== 'stopped') throw new Error(`crun reports state ${String(status)}`);
  const pid = state.pid;
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid < 0) throw new Error(`crun reports pid ${String(pid)}`);
  const cgroupDir = path.join(cgroupRoot, 'vrun', id);
  const oomKills = oomKillCount(cgroupDir);
  const exited = status === 'stopped' || pid <= 1;
  const proc = (execId: string, procPid: number): Proc => ({
    execId,
    state: exited ? { status: 'exited', pid: procPid, exit: EXIT_UNKNOWN } : { status: 'running', pid: procPid },
    io: ProcessIo.none(),
    exit: Promise.resolve(EXIT_UNKNOWN),
    oomBaseline: oomKills,
  });
  const initial: ContainerState = exited ? { status: 'stopped', exit: EXIT_UNKNOWN } : { status: status as 'created' | 'running' | 'paused' };
  const c: Container = {
    id,
    bundle,
    cgroupDir,
    state: initial,
    init: proc('', pid),
    execs: new Map(),
    oomKills,
    hasPoststartHooks: hasHooks(spec, 'poststart'),
    hasPoststopHooks: hasHooks(spec, 'poststop'),
    busy: Promise.resolve(),
  };
  if (!exited) c.init.exit = track(c, c.init);
  for (const file of readdirSync(bundle)) {
    const m = /^exec-(.+)\.pid$/.exec(file);
    if (!m || !isSafeId(m[1] as string)) continue;
    const execPid = Number(readFileSync(path.join(bundle, file), 'utf8').trim());
    if (!Number.isSafeInteger(execPid) || execPid <= 1) continue;
    const p = proc(m[1] as string, execPid);
    if (!exited) p.exit = track(c, p);
    c.execs.set(p.execId, p);
  }
  return c;
}
