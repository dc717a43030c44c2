import { VrunError } from '../../common/errors.js';
import type { CpuStats__Output } from '../protocol/generated/vrun/agent/v1/CpuStats.js';
import type { IoStats__Output } from '../protocol/generated/vrun/agent/v1/IoStats.js';
import type { MemoryStats__Output } from '../protocol/generated/vrun/agent/v1/MemoryStats.js';
import type { PidsStats__Output } from '../protocol/generated/vrun/agent/v1/PidsStats.js';
import type { StatsResponse__Output } from '../protocol/generated/vrun/agent/v1/StatsResponse.js';
import type { WaitProcessResponse__Output } from '../protocol/generated/vrun/agent/v1/WaitProcessResponse.js';
import type { WaitResult } from '../protocol/process.js';

/**
 * The numbers in the guest's replies, range-checked before anyone on the host uses them: the guest is hostile,
 * and a pid, an exit status or a counter out of range must fail the call, not flow on.
 */
export interface ContainerStats {
  cpu: CpuStats__Output;
  memory: MemoryStats__Output;
  pids: PidsStats__Output;
  io: IoStats__Output;
  controllers: string[];
}

export function checkInt(what: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new VrunError(`agent sent an invalid ${what}: ${value} (expected an integer in ${min}..${max})`);
  }
  return value;
}

export function validPid(method: string, pid: number): number {
  return checkInt(`${method} pid`, pid, 1, 4_194_304);
}

export function validWait(r: WaitProcessResponse__Output): WaitResult {
  return {
    exitStatus: checkInt('exit status', r.exitStatus, 0, 255),
    signal: checkInt('signal', r.signal, 0, 64),
    oomKilled: r.oomKilled === true,
  };
}

export function validStats(r: StatsResponse__Output): ContainerStats {
  const { cpu, memory, pids, io } = r;
  if (!cpu || !memory || !pids || !io) throw new VrunError('agent stats lack a section (cpu, memory, pids or io)');
  for (const [group, value] of Object.entries({ cpu, memory, pids, io })) {
    for (const [k, v] of Object.entries(value)) checkInt(`stats ${group}.${k}`, v as number, 0, Number.MAX_SAFE_INTEGER);
  }
  if (r.controllers.length > 32 || r.controllers.some((c) => c.length > 32)) throw new VrunError('agent stats name too many or overlong controllers');
  return { cpu, memory, pids, io, controllers: r.controllers };
}
