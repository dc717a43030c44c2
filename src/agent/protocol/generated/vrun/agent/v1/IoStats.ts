// Original file: proto/vrun/agent/v1/agent.proto

import type { Long } from '@grpc/proto-loader';

export interface IoStats {
  'readBytes'?: (number | string | Long);
  'writeBytes'?: (number | string | Long);
  'readIos'?: (number | string | Long);
  'writeIos'?: (number | string | Long);
}

export interface IoStats__Output {
  'readBytes': (number);
  'writeBytes': (number);
  'readIos': (number);
  'writeIos': (number);
}
