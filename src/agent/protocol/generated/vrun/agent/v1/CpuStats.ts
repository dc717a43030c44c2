// Original file: proto/vrun/agent/v1/agent.proto

import type { Long } from '@grpc/proto-loader';

export interface CpuStats {
  'usageUsec'?: (number | string | Long);
  'userUsec'?: (number | string | Long);
  'systemUsec'?: (number | string | Long);
  'nrThrottled'?: (number | string | Long);
  'throttledUsec'?: (number | string | Long);
}

export interface CpuStats__Output {
  'usageUsec': (number);
  'userUsec': (number);
  'systemUsec': (number);
  'nrThrottled': (number);
  'throttledUsec': (number);
}
