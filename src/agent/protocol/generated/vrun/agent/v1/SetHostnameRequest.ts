// Original file: proto/vrun/agent/v1/agent.proto


export interface SetHostnameRequest {
  'hostname'?: (string);
}

export interface SetHostnameRequest__Output {
  'hostname': (string);
}
