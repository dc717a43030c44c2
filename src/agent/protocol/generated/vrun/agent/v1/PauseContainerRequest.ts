// Original file: proto/vrun/agent/v1/agent.proto


export interface PauseContainerRequest {
  'containerId'?: (string);
}

export interface PauseContainerRequest__Output {
  'containerId': (string);
}
