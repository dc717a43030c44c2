// Original file: proto/vrun/agent/v1/agent.proto


export interface CreateContainerResponse {
  'pid'?: (number);
}

export interface CreateContainerResponse__Output {
  'pid': (number);
}
