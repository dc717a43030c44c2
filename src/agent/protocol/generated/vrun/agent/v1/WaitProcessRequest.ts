// Original file: proto/vrun/agent/v1/agent.proto


export interface WaitProcessRequest {
  'containerId'?: (string);
  'execId'?: (string);
}

export interface WaitProcessRequest__Output {
  'containerId': (string);
  'execId': (string);
}
