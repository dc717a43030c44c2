// Original file: proto/vrun/agent/v1/agent.proto

import type { Long } from '@grpc/proto-loader';

export interface WriteStdinResponse {
  'bytesWritten'?: (number | string | Long);
}

export interface WriteStdinResponse__Output {
  'bytesWritten': (number);
}
