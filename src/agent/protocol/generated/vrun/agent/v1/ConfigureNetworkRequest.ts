// Original file: proto/vrun/agent/v1/agent.proto

import type { NetworkInterface as _vrun_agent_v1_NetworkInterface, NetworkInterface__Output as _vrun_agent_v1_NetworkInterface__Output } from '../../../vrun/agent/v1/NetworkInterface.js';
import type { NetworkRoute as _vrun_agent_v1_NetworkRoute, NetworkRoute__Output as _vrun_agent_v1_NetworkRoute__Output } from '../../../vrun/agent/v1/NetworkRoute.js';
import type { NetworkNeighbor as _vrun_agent_v1_NetworkNeighbor, NetworkNeighbor__Output as _vrun_agent_v1_NetworkNeighbor__Output } from '../../../vrun/agent/v1/NetworkNeighbor.js';

export interface ConfigureNetworkRequest {
  'interfaces'?: (_vrun_agent_v1_NetworkInterface)[];
  'routes'?: (_vrun_agent_v1_NetworkRoute)[];
  'neighbors'?: (_vrun_agent_v1_NetworkNeighbor)[];
}

export interface ConfigureNetworkRequest__Output {
  'interfaces': (_vrun_agent_v1_NetworkInterface__Output)[];
  'routes': (_vrun_agent_v1_NetworkRoute__Output)[];
  'neighbors': (_vrun_agent_v1_NetworkNeighbor__Output)[];
}
