// Original file: proto/vrun/agent/v1/agent.proto

import type { Long } from '@grpc/proto-loader';

export interface GuestDetailsResponse {
  'kernelRelease'?: (string);
  'agentVersion'?: (string);
  'cgroupMode'?: (string);
  'memTotalBytes'?: (number | string | Long);
  'cpus'?: (number);
  'crunVersion'?: (string);
  'nodeVersion'?: (string);
  'cgroupControllers'?: (string)[];
}

export interface GuestDetailsResponse__Output {
  'kernelRelease': (string);
  'agentVersion': (string);
  'cgroupMode': (string);
  'memTotalBytes': (number);
  'cpus': (number);
  'crunVersion': (string);
  'nodeVersion': (string);
  'cgroupControllers': (string)[];
}
