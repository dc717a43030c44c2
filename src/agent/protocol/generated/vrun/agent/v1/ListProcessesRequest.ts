// Original file: proto/vrun/agent/v1/agent.proto


export interface ListProcessesRequest {
  'containerId'?: (string);
}

export interface ListProcessesRequest__Output {
  'containerId': (string);
}
