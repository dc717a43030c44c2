// Original file: proto/vrun/agent/v1/agent.proto


export interface ConfiguredInterface {
  'mac'?: (string);
  'name'?: (string);
}

export interface ConfiguredInterface__Output {
  'mac': (string);
  'name': (string);
}
