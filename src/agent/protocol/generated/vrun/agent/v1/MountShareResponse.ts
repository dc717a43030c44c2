// Original file: proto/vrun/agent/v1/agent.proto


export interface MountShareResponse {
  'mountPath'?: (string);
}

export interface MountShareResponse__Output {
  'mountPath': (string);
}
