// Original file: proto/vrun/agent/v1/agent.proto

import type { CpuStats as _vrun_agent_v1_CpuStats, CpuStats__Output as _vrun_agent_v1_CpuStats__Output } from '../../../vrun/agent/v1/CpuStats.js';
import type { MemoryStats as _vrun_agent_v1_MemoryStats, MemoryStats__Output as _vrun_agent_v1_MemoryStats__Output } from '../../../vrun/agent/v1/MemoryStats.js';
import type { PidsStats as _vrun_agent_v1_PidsStats, PidsStats__Output as _vrun_agent_v1_PidsStats__Output } from '../../../vrun/agent/v1/PidsStats.js';
import type { IoStats as _vrun_agent_v1_IoStats, IoStats__Output as _vrun_agent_v1_IoStats__Output } from '../../../vrun/agent/v1/IoStats.js';

export interface StatsResponse {
  'cpu'?: (_vrun_agent_v1_CpuStats | null);
  'memory'?: (_vrun_agent_v1_MemoryStats | null);
  'pids'?: (_vrun_agent_v1_PidsStats | null);
  'io'?: (_vrun_agent_v1_IoStats | null);
  'controllers'?: (string)[];
}

export interface StatsResponse__Output {
  'cpu': (_vrun_agent_v1_CpuStats__Output | null);
  'memory': (_vrun_agent_v1_MemoryStats__Output | null);
  'pids': (_vrun_agent_v1_PidsStats__Output | null);
  'io': (_vrun_agent_v1_IoStats__Output | null);
  'controllers': (string)[];
}
