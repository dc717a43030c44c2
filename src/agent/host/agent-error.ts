import * as grpc from '@grpc/grpc-js';
import { type ErrorKind, VrunError } from '../../common/errors.js';
import { kindOfStatus } from '../protocol/rpc-error.js';

/**
 * A failed agent call: the gRPC status code, the kind it means (error-codes.ts; the agent may name a finer
 * kind beside the code, see kindOfStatus) and the agent's message.
 */
export class AgentError extends VrunError {
  readonly code: grpc.status;
  readonly details: string;
  readonly method: string;

  constructor(method: string, code: grpc.status, details: string, cause?: unknown, kind: ErrorKind = kindOfStatus(code, undefined)) {
    super(`agent ${method} failed: ${grpc.status[code] ?? code}: ${details}`, { cause, kind });
    this.name = 'AgentError';
    this.code = code;
    this.details = details;
    this.method = method;
  }
}

export function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === 'number';
}

export function toAgentError(method: string, err: unknown): AgentError {
  if (err instanceof AgentError) return err;
  if (isServiceError(err)) return new AgentError(method, err.code, err.details || err.message, err, kindOfStatus(err.code, err.metadata));
  return new AgentError(method, grpc.status.UNKNOWN, err instanceof Error ? err.message : String(err), err);
}
