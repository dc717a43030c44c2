// Original file: proto/vrun/agent/v1/agent.proto


export interface Sysctl {
  'key'?: (string);
  'value'?: (string);
}

export interface Sysctl__Output {
  'key': (string);
  'value': (string);
}
