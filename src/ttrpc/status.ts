/**
 * gRPC status codes (google.rpc.Code) as ttrpc carries them in Response.status, and the error type
 * both our client and server use for them. containerd maps these codes onto its errdefs
 * (NOT_FOUND -> ErrNotFound, ALREADY_EXISTS, FAILED_PRECONDITION, UNIMPLEMENTED -> ErrNotImplemented, ...),
 * so handlers should throw the code that says what went wrong rather than a bare Error (which becomes UNKNOWN).
 */
import { StatusCode, kindOfStatusCode, statusCodeOf } from '../common/error-codes.js';
import { VrunError } from '../common/errors.js';
import type { Any } from './protobuf/well-known.js';

export const Code = StatusCode;
export type Code = StatusCode;

const codeNames = new Map<number, string>(Object.entries(Code).map(([name, value]) => [value, name]));

export function codeName(code: number): string {
  return codeNames.get(code) ?? `CODE_${code}`;
}

/** A failed call: `code` is the gRPC status code, `message` the status message exactly as sent on the wire. */
export class TtrpcError extends VrunError {
  readonly code: number;
  readonly details: readonly Any[];

  constructor(code: number, message: string, opts: { details?: readonly Any[]; cause?: unknown } = {}) {
    super(message, { kind: kindOfStatusCode(code), ...(opts.cause === undefined ? {} : { cause: opts.cause }) });
    this.name = `TtrpcError(${codeName(code)})`;
    this.code = code;
    this.details = opts.details ?? [];
  }
}

export function isTtrpcError(err: unknown, code?: number): err is TtrpcError {
  return err instanceof TtrpcError && (code === undefined || err.code === code);
}

/**
 * The status a server sends for an error a handler threw: TtrpcErrors keep their code, vrun's other errors
 * get their kind's code, anything else is UNKNOWN.
 */
export function statusFromError(err: unknown): { code: number; message: string; details: Any[] } {
  if (err instanceof TtrpcError) return { code: err.code, message: err.message, details: [...err.details] };
  if (err instanceof VrunError) return { code: statusCodeOf(err.kind), message: err.message, details: [] };
  if (err instanceof Error) return { code: Code.UNKNOWN, message: err.message, details: [] };
  return { code: Code.UNKNOWN, message: String(err), details: [] };
}
