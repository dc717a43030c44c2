// Original file: proto/vrun/agent/v1/agent.proto


export interface ReadOutputRequest {
  'containerId'?: (string);
  'execId'?: (string);
}

export interface ReadOutputRequest__Output {
  'containerId': (string);
  'execId': (string);
}
