// Original file: proto/vrun/agent/v1/agent.proto


export interface PortForwardRequest {
  'port'?: (number);
  'address'?: (string);
  'data'?: (Buffer | Uint8Array | string);
}

export interface PortForwardRequest__Output {
  'port': (number);
  'address': (string);
  'data': (Buffer);
}
