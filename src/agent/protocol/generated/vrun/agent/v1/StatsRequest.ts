// Original file: proto/vrun/agent/v1/agent.proto


export interface StatsRequest {
  'containerId'?: (string);
}

export interface StatsRequest__Output {
  'containerId': (string);
}
