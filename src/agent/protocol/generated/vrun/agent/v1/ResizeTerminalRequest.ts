// Original file: proto/vrun/agent/v1/agent.proto


export interface ResizeTerminalRequest {
  'containerId'?: (string);
  'execId'?: (string);
  'rows'?: (number);
  'cols'?: (number);
}

export interface ResizeTerminalRequest__Output {
  'containerId': (string);
  'execId': (string);
  'rows': (number);
  'cols': (number);
}
