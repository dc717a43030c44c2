// Original file: proto/vrun/agent/v1/agent.proto


export interface WaitProcessResponse {
  'exitStatus'?: (number);
  'signal'?: (number);
  'oomKilled'?: (boolean);
}

export interface WaitProcessResponse__Output {
  'exitStatus': (number);
  'signal': (number);
  'oomKilled': (boolean);
}
