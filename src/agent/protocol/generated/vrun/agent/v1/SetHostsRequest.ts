// Original file: proto/vrun/agent/v1/agent.proto

import type { HostsEntry as _vrun_agent_v1_HostsEntry, HostsEntry__Output as _vrun_agent_v1_HostsEntry__Output } from '../../../vrun/agent/v1/HostsEntry.js';

export interface SetHostsRequest {
  'entries'?: (_vrun_agent_v1_HostsEntry)[];
}

export interface SetHostsRequest__Output {
  'entries': (_vrun_agent_v1_HostsEntry__Output)[];
}
