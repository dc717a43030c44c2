// Original file: proto/vrun/agent/v1/agent.proto


export interface CloseStdinRequest {
  'containerId'?: (string);
  'execId'?: (string);
}

export interface CloseStdinRequest__Output {
  'containerId': (string);
  'execId': (string);
}
