// Original file: proto/vrun/agent/v1/agent.proto


export interface MountShareRequest {
  'tag'?: (string);
  'path'?: (string);
  'readonly'?: (boolean);
}

export interface MountShareRequest__Output {
  'tag': (string);
  'path': (string);
  'readonly': (boolean);
}
