// Original file: proto/vrun/agent/v1/agent.proto


export interface HostsEntry {
  'ip'?: (string);
  'names'?: (string)[];
}

export interface HostsEntry__Output {
  'ip': (string);
  'names': (string)[];
}
