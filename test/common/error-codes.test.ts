import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { KIND_METADATA_KEY, StatusCode, kindNeedsName, kindOfStatusCode, statusCodeOf } from '../../src/common/error-codes.js';
import { ERROR_KINDS, VrunError, errorKind, isErrorKind } from '../../src/common/errors.js';
import { kindOfStatus, toStatus } from '../../src/agent/protocol/rpc-error.js';
import { Code, TtrpcError, statusFromError } from '../../src/ttrpc/status.js';

/** The one table between error kinds and gRPC/ttrpc status codes (src/common/error-codes.ts). */
describe('error kinds and status codes', () => {
  it('gives every kind a real status code, never OK or UNKNOWN', () => {
    const codes = new Set<number>(Object.values(StatusCode));
    for (const kind of ERROR_KINDS) {
      expect(codes.has(statusCodeOf(kind)), kind).toBe(true);
      expect(statusCodeOf(kind), kind).not.toBe(StatusCode.OK);
      expect(statusCodeOf(kind), kind).not.toBe(StatusCode.UNKNOWN);
    }
  });

  it('reads every kind back from its code, by name where the code is shared', () => {
    for (const kind of ERROR_KINDS) {
      const code = statusCodeOf(kind);
      expect(kindOfStatusCode(code, kindNeedsName(kind) ? kind : undefined), kind).toBe(kind);
    }
  });

  it('maps the errdefs kinds as containerd reads the codes', () => {
    expect(Object.fromEntries(ERROR_KINDS.map((k) => [k, statusCodeOf(k)]))).toEqual({
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
    });
    expect(ERROR_KINDS.filter(kindNeedsName)).toEqual(['command-not-found', 'command-not-executable']);
  });

  it('reads a bare shared code as the plain kind', () => {
    expect(kindOfStatusCode(StatusCode.NOT_FOUND)).toBe('not-found');
    expect(kindOfStatusCode(StatusCode.PERMISSION_DENIED)).toBe('permission');
  });

  it('reads codes outside the table, and numbers that are no code, as internal', () => {
    for (const code of [StatusCode.OK, StatusCode.UNKNOWN, StatusCode.ABORTED, StatusCode.OUT_OF_RANGE, StatusCode.DATA_LOSS, StatusCode.UNAUTHENTICATED, 17, -1, 2 ** 31, Number.NaN]) {
      expect(kindOfStatusCode(code), String(code)).toBe('internal');
    }
  });

  it('takes a named kind only where it refines its own code', () => {
    // A hostile guest cannot turn an INTERNAL failure into a missing command (exit 127), nor name garbage.
    expect(kindOfStatusCode(StatusCode.INTERNAL, 'command-not-found')).toBe('internal');
    expect(kindOfStatusCode(StatusCode.PERMISSION_DENIED, 'command-not-found')).toBe('permission');
    expect(kindOfStatusCode(StatusCode.NOT_FOUND, 'command-not-executable')).toBe('not-found');
    for (const junk of ['', 'nope', 'COMMAND-NOT-FOUND', 'command-not-found\n', 'x'.repeat(10_000), 42, null, {}, ['command-not-found']]) {
      expect(kindOfStatusCode(StatusCode.NOT_FOUND, junk), JSON.stringify(junk)).toBe('not-found');
    }
    expect(isErrorKind('x'.repeat(40))).toBe(false);
  });

  it('the ttrpc codes are the same numbers', () => {
    expect(Code).toBe(StatusCode);
    for (const [name, value] of Object.entries(StatusCode)) expect(grpc.status[name as keyof typeof grpc.status], name).toBe(value);
  });
});

describe('errors on the wire', () => {
  it('the agent answers with the code of the kind, and names only a shared one', () => {
    const plain = toStatus(new VrunError('no container x', { kind: 'not-found' }));
    expect(plain).toMatchObject({ code: grpc.status.NOT_FOUND, details: 'no container x' });
    expect(plain.metadata).toBeUndefined();
    const cmd = toStatus(new VrunError('crun create failed: ...', { kind: 'command-not-found' }));
    expect(cmd.code).toBe(grpc.status.NOT_FOUND);
    expect(cmd.metadata?.get(KIND_METADATA_KEY)).toEqual(['command-not-found']);
    expect(toStatus(new Error('boom'))).toMatchObject({ code: grpc.status.INTERNAL, details: 'boom' });
  });

  it('the host reads the kind back from the status and bounds what the guest named', () => {
    const md = (...values: string[]) => {
      const m = new grpc.Metadata();
      for (const v of values) m.add(KIND_METADATA_KEY, v);
      return m;
    };
    expect(kindOfStatus(grpc.status.NOT_FOUND, md('command-not-found'))).toBe('command-not-found');
    expect(kindOfStatus(grpc.status.PERMISSION_DENIED, md('command-not-executable'))).toBe('command-not-executable');
    expect(kindOfStatus(grpc.status.NOT_FOUND, undefined)).toBe('not-found');
    expect(kindOfStatus(grpc.status.NOT_FOUND, md('command-not-found', 'command-not-found'))).toBe('not-found');
    expect(kindOfStatus(grpc.status.NOT_FOUND, md(`command-not-found${' '.repeat(100)}`))).toBe('not-found');
    expect(kindOfStatus(grpc.status.UNKNOWN, md('command-not-found'))).toBe('internal');
  });

  it('the shim sends the code of the kind; ttrpc errors keep theirs and carry the kind of their code', () => {
    expect(statusFromError(new VrunError('missing', { kind: 'command-not-found' })).code).toBe(Code.NOT_FOUND);
    expect(statusFromError(new VrunError('name clash', { kind: 'exists' })).code).toBe(Code.ALREADY_EXISTS);
    expect(statusFromError(new VrunError('oops')).code).toBe(Code.INTERNAL);
    expect(statusFromError(new Error('not ours')).code).toBe(Code.UNKNOWN);
    const t = new TtrpcError(Code.UNIMPLEMENTED, 'no checkpoints');
    expect(statusFromError(t).code).toBe(Code.UNIMPLEMENTED);
    expect(errorKind(t)).toBe('not-implemented');
    expect(errorKind(new TtrpcError(Code.ABORTED, 'x'))).toBe('internal');
  });
});
