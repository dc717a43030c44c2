// Original file: proto/vrun/agent/v1/agent.proto

import type { ProcessInfo as _vrun_agent_v1_ProcessInfo, ProcessInfo__Output as _vrun_agent_v1_ProcessInfo__Output } from '../../../vrun/agent/v1/ProcessInfo.js';

export interface ListProcessesResponse {
  'processes'?: (_vrun_agent_v1_ProcessInfo)[];
}

export interface ListProcessesResponse__Output {
  'processes': (_vrun_agent_v1_ProcessInfo__Output)[];
}
