// Original file: proto/vrun/agent/v1/agent.proto

import type { RouteScope as _vrun_agent_v1_RouteScope, RouteScope__Output as _vrun_agent_v1_RouteScope__Output } from '../../../vrun/agent/v1/RouteScope.js';

export interface NetworkRoute {
  'destination'?: (string);
  'gateway'?: (string);
  'interfaceMac'?: (string);
  'source'?: (string);
  'scope'?: (_vrun_agent_v1_RouteScope);
  'onlink'?: (boolean);
  'metric'?: (number);
}

export interface NetworkRoute__Output {
  'destination': (string);
  'gateway': (string);
  'interfaceMac': (string);
  'source': (string);
  'scope': (_vrun_agent_v1_RouteScope__Output);
  'onlink': (boolean);
  'metric': (number);
}
