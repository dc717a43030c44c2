// Original file: proto/vrun/agent/v1/agent.proto

import type { Long } from '@grpc/proto-loader';

export interface OomEvent {
  'containerId'?: (string);
  'oomKillCount'?: (number | string | Long);
}

export interface OomEvent__Output {
  'containerId': (string);
  'oomKillCount': (number);
}
