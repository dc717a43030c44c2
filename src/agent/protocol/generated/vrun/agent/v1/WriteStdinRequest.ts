// Original file: proto/vrun/agent/v1/agent.proto


export interface WriteStdinRequest {
  'containerId'?: (string);
  'execId'?: (string);
  'data'?: (Buffer | Uint8Array | string);
  'closeStdin'?: (boolean);
}

export interface WriteStdinRequest__Output {
  'containerId': (string);
  'execId': (string);
  'data': (Buffer);
  'closeStdin': (boolean);
}
