import * as grpc from '@grpc/grpc-js';
import { KIND_METADATA_KEY, kindNeedsName, kindOfStatusCode, statusCodeOf } from '../../common/error-codes.js';
import { type ErrorKind, VrunError, errorKind, errorMessage } from '../../common/errors.js';

/**
 * An error the agent returns to its caller as a gRPC status, with a message naming what was wrong. Its kind
 * comes from the code through the one table (error-codes.ts); the helpers below are the usual way to make one.
 */
export class RpcError extends VrunError {
  readonly code: grpc.status;

  constructor(code: grpc.status, message: string, cause?: unknown) {
    super(message, { cause, kind: kindOfStatusCode(code) });
    this.name = 'RpcError';
    this.code = code;
  }
}

const ofKind = (kind: ErrorKind) => (message: string): VrunError => new VrunError(message, { kind });
export const invalid = ofKind('invalid');
export const notFound = ofKind('not-found');
export const exists = ofKind('exists');
export const precondition = ofKind('precondition');
export const exhausted = ofKind('resource-exhausted');
export const internal = ofKind('internal');

/**
 * The status the agent answers with for any failure: the code of the error's kind, and the kind by name when
 * the code alone would read back as another (command-not-found travels as NOT_FOUND plus its name).
 */
export function toStatus(err: unknown): Partial<grpc.StatusObject> {
  const kind = errorKind(err);
  const status: Partial<grpc.StatusObject> = { code: statusCodeOf(kind) as number as grpc.status, details: errorMessage(err) };
  if (kindNeedsName(kind)) {
    const metadata = new grpc.Metadata();
    metadata.set(KIND_METADATA_KEY, kind);
    status.metadata = metadata;
  }
  return status;
}

/** Longest kind name read from a status's metadata (the longest kind is 22 characters). */
const MAX_KIND_NAME = 32;

/**
 * The kind a status from the agent means. The agent is in the guest and may be hostile: the name it sends is
 * read only as one short ASCII value, and kindOfStatusCode takes it only where it refines the code.
 */
export function kindOfStatus(code: number, metadata: grpc.Metadata | undefined): ErrorKind {
  const values = metadata?.get(KIND_METADATA_KEY) ?? [];
  const named = values.length === 1 && typeof values[0] === 'string' && values[0].length <= MAX_KIND_NAME ? values[0] : undefined;
  return kindOfStatusCode(code, named);
}
