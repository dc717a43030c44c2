// Original file: proto/vrun/agent/v1/agent.proto

import type { Long } from '@grpc/proto-loader';

export interface MemoryStats {
  'currentBytes'?: (number | string | Long);
  'limitBytes'?: (number | string | Long);
  'anonBytes'?: (number | string | Long);
  'fileBytes'?: (number | string | Long);
  'oomEvents'?: (number | string | Long);
  'oomKillEvents'?: (number | string | Long);
}

export interface MemoryStats__Output {
  'currentBytes': (number);
  'limitBytes': (number);
  'anonBytes': (number);
  'fileBytes': (number);
  'oomEvents': (number);
  'oomKillEvents': (number);
}
