// Original file: proto/vrun/agent/v1/agent.proto


export interface ResumeContainerRequest {
  'containerId'?: (string);
}

export interface ResumeContainerRequest__Output {
  'containerId': (string);
}
