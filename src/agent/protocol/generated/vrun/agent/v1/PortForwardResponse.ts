// Original file: proto/vrun/agent/v1/agent.proto


export interface PortForwardResponse {
  'data'?: (Buffer | Uint8Array | string);
}

export interface PortForwardResponse__Output {
  'data': (Buffer);
}
