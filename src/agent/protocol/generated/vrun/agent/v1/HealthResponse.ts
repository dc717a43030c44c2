// Original file: proto/vrun/agent/v1/agent.proto


export interface HealthResponse {
  'serving'?: (boolean);
}

export interface HealthResponse__Output {
  'serving': (boolean);
}
