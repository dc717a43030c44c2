// Original file: proto/vrun/agent/v1/agent.proto

import type { StdioMode as _vrun_agent_v1_StdioMode, StdioMode__Output as _vrun_agent_v1_StdioMode__Output } from '../../../vrun/agent/v1/StdioMode.js';

export interface ExecProcessRequest {
  'containerId'?: (string);
  'execId'?: (string);
  'processJson'?: (string);
  'stdio'?: (_vrun_agent_v1_StdioMode);
  'userSpec'?: (string);
}

export interface ExecProcessRequest__Output {
  'containerId': (string);
  'execId': (string);
  'processJson': (string);
  'stdio': (_vrun_agent_v1_StdioMode__Output);
  'userSpec': (string);
}
