/**
 * The one table between vrun's error kinds and gRPC status codes (google.rpc.Code). The agent answers in
 * these codes through grpc-js, and the shim through ttrpc, which carries the same numbers; containerd reads
 * them into its errdefs. Everything that turns an error into a code, or a code into an error, goes through here.
 */
import { ERROR_KINDS, type ErrorKind, isErrorKind } from './errors.js';

export const StatusCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type StatusCode = (typeof StatusCode)[keyof typeof StatusCode];

/**
 * Every kind has one code. A code names one kind: the first in ERROR_KINDS's order with that code. The two
 * command kinds share their code with not-found and permission (what containerd should make of them), so
 * across a wire they also travel by name (KIND_METADATA_KEY).
 */
const CODE_OF_KIND: Readonly<Record<ErrorKind, StatusCode>> = {
  invalid: StatusCode.INVALID_ARGUMENT,
  'not-found': StatusCode.NOT_FOUND,
  exists: StatusCode.ALREADY_EXISTS,
  precondition: StatusCode.FAILED_PRECONDITION,
  unavailable: StatusCode.UNAVAILABLE,
  permission: StatusCode.PERMISSION_DENIED,
  'not-implemented': StatusCode.UNIMPLEMENTED,
  canceled: StatusCode.CANCELLED,
  deadline: StatusCode.DEADLINE_EXCEEDED,
  'resource-exhausted': StatusCode.RESOURCE_EXHAUSTED,
  internal: StatusCode.INTERNAL,
  'command-not-found': StatusCode.NOT_FOUND,
  'command-not-executable': StatusCode.PERMISSION_DENIED,
};

const KIND_OF_CODE: ReadonlyMap<number, ErrorKind> = (() => {
  const m = new Map<number, ErrorKind>();
  for (const kind of ERROR_KINDS) if (!m.has(CODE_OF_KIND[kind])) m.set(CODE_OF_KIND[kind], kind);
  return m;
})();

/** gRPC metadata (trailers) key naming the kind when the code alone does not (see kindNeedsName). */
export const KIND_METADATA_KEY = 'vrun-error-kind';

export function statusCodeOf(kind: ErrorKind): StatusCode {
  return CODE_OF_KIND[kind];
}

/**
 * The kind a status from the other side means. `named` is what it claimed by name (untrusted: a guest's
 * agent sends it): taken only if it is a kind and that kind has this very code, so a peer can refine a code
 * but never change what it means to containerd or to the exit code's 125. Unknown codes are internal.
 */
export function kindOfStatusCode(code: number, named?: unknown): ErrorKind {
  if (isErrorKind(named) && CODE_OF_KIND[named] === code) return named;
  return KIND_OF_CODE.get(code) ?? 'internal';
}

/** Whether a kind must travel by name beside its code (its code alone reads back as another kind). */
export function kindNeedsName(kind: ErrorKind): boolean {
  return KIND_OF_CODE.get(CODE_OF_KIND[kind]) !== kind;
}
