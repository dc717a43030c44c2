// Original file: proto/vrun/agent/v1/agent.proto


export interface SignalProcessRequest {
  'containerId'?: (string);
  'execId'?: (string);
  'signal'?: (string);
  'all'?: (boolean);
}

export interface SignalProcessRequest__Output {
  'containerId': (string);
  'execId': (string);
  'signal': (string);
  'all': (boolean);
}
