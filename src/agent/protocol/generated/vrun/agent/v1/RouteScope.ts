// Original file: proto/vrun/agent/v1/agent.proto

export const RouteScope = {
  ROUTE_SCOPE_UNSPECIFIED: 'ROUTE_SCOPE_UNSPECIFIED',
  ROUTE_SCOPE_UNIVERSE: 'ROUTE_SCOPE_UNIVERSE',
  ROUTE_SCOPE_LINK: 'ROUTE_SCOPE_LINK',
  ROUTE_SCOPE_HOST: 'ROUTE_SCOPE_HOST',
} as const;

export type RouteScope =
  | 'ROUTE_SCOPE_UNSPECIFIED'
  | 0
  | 'ROUTE_SCOPE_UNIVERSE'
  | 1
  | 'ROUTE_SCOPE_LINK'
  | 2
  | 'ROUTE_SCOPE_HOST'
  | 3

export type RouteScope__Output = typeof RouteScope[keyof typeof RouteScope]
