// Original file: proto/vrun/agent/v1/agent.proto

export const StdioMode = {
  STDIO_MODE_UNSPECIFIED: 'STDIO_MODE_UNSPECIFIED',
  STDIO_MODE_PIPES: 'STDIO_MODE_PIPES',
  STDIO_MODE_TERMINAL: 'STDIO_MODE_TERMINAL',
} as const;

export type StdioMode =
  | 'STDIO_MODE_UNSPECIFIED'
  | 0
  | 'STDIO_MODE_PIPES'
  | 1
  | 'STDIO_MODE_TERMINAL'
  | 2

export type StdioMode__Output = typeof StdioMode[keyof typeof StdioMode]
