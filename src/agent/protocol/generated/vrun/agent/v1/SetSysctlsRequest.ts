// Original file: proto/vrun/agent/v1/agent.proto

import type { Sysctl as _vrun_agent_v1_Sysctl, Sysctl__Output as _vrun_agent_v1_Sysctl__Output } from '../../../vrun/agent/v1/Sysctl.js';

export interface SetSysctlsRequest {
  'sysctls'?: (_vrun_agent_v1_Sysctl)[];
}

export interface SetSysctlsRequest__Output {
  'sysctls': (_vrun_agent_v1_Sysctl__Output)[];
}
