// Original file: proto/vrun/agent/v1/agent.proto

import type { StdioMode as _vrun_agent_v1_StdioMode, StdioMode__Output as _vrun_agent_v1_StdioMode__Output } from '../../../vrun/agent/v1/StdioMode.js';

export interface CreateContainerRequest {
  'containerId'?: (string);
  'ociSpecJson'?: (string);
  'rootfs'?: (string);
  'stdio'?: (_vrun_agent_v1_StdioMode);
  'start'?: (boolean);
}

export interface CreateContainerRequest__Output {
  'containerId': (string);
  'ociSpecJson': (string);
  'rootfs': (string);
  'stdio': (_vrun_agent_v1_StdioMode__Output);
  'start': (boolean);
}
