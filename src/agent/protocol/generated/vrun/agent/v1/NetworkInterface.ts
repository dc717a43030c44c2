// Original file: proto/vrun/agent/v1/agent.proto


export interface NetworkInterface {
  'mac'?: (string);
  'name'?: (string);
  'mtu'?: (number);
  'addresses'?: (string)[];
}

export interface NetworkInterface__Output {
  'mac': (string);
  'name': (string);
  'mtu': (number);
  'addresses': (string)[];
}
