// Original file: proto/vrun/agent/v1/agent.proto

import type { ConfiguredInterface as _vrun_agent_v1_ConfiguredInterface, ConfiguredInterface__Output as _vrun_agent_v1_ConfiguredInterface__Output } from '../../../vrun/agent/v1/ConfiguredInterface.js';

export interface ConfigureNetworkResponse {
  'interfaces'?: (_vrun_agent_v1_ConfiguredInterface)[];
}

export interface ConfigureNetworkResponse__Output {
  'interfaces': (_vrun_agent_v1_ConfiguredInterface__Output)[];
}
