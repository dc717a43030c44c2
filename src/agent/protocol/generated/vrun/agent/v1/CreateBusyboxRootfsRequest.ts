// Original file: proto/vrun/agent/v1/agent.proto


export interface CreateBusyboxRootfsRequest {
  'path'?: (string);
}

export interface CreateBusyboxRootfsRequest__Output {
  'path': (string);
}
