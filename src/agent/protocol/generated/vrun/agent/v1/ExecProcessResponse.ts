// Original file: proto/vrun/agent/v1/agent.proto


export interface ExecProcessResponse {
  'pid'?: (number);
}

export interface ExecProcessResponse__Output {
  'pid': (number);
}
