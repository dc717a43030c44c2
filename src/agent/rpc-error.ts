import { status } from '@grpc/grpc-js';
import { VrunError } from '../common/errors.js';

/** An error the agent returns to its caller as this gRPC status, with a message naming what was wrong. */
export class RpcError extends VrunError {
  readonly code: status;

  constructor(code: status, message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'RpcError';
    this.code = code;
  }
}

export const invalid = (message: string): RpcError => new RpcError(status.INVALID_ARGUMENT, message);
export const notFound = (message: string): RpcError => new RpcError(status.NOT_FOUND, message);
export const precondition = (message: string): RpcError => new RpcError(status.FAILED_PRECONDITION, message);
