// Original file: proto/vrun/agent/v1/agent.proto


export interface NetworkNeighbor {
  'ip'?: (string);
  'mac'?: (string);
  'interfaceMac'?: (string);
  'permanent'?: (boolean);
}

export interface NetworkNeighbor__Output {
  'ip': (string);
  'mac': (string);
  'interfaceMac': (string);
  'permanent': (boolean);
}
