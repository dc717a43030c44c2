// Original file: proto/vrun/agent/v1/agent.proto


export interface ProcessInfo {
  'pid'?: (number);
  'execId'?: (string);
  'known'?: (boolean);
}

export interface ProcessInfo__Output {
  'pid': (number);
  'execId': (string);
  'known': (boolean);
}
