// Original file: proto/vrun/agent/v1/agent.proto


export interface CreateBusyboxRootfsResponse {
  'rootfs'?: (string);
}

export interface CreateBusyboxRootfsResponse__Output {
  'rootfs': (string);
}
