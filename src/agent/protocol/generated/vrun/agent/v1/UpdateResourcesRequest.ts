// Original file: proto/vrun/agent/v1/agent.proto


export interface UpdateResourcesRequest {
  'containerId'?: (string);
  'resourcesJson'?: (string);
}

export interface UpdateResourcesRequest__Output {
  'containerId': (string);
  'resourcesJson': (string);
}
