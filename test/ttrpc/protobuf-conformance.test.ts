/**
 * Our TypeScript schemas against the .proto files under proto/, using protobufjs as an independent
 * protobuf implementation: same fields (numbers, types, labels), the same bytes on the wire for the same
 * message, and each side decoding what the other encoded.
 */
import path from 'node:path';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import * as ttrpcMessages from '../../src/ttrpc/messages.js';
import type { FieldSpec, MessageType } from '../../src/ttrpc/protobuf/schema.js';
import * as wellKnown from '../../src/ttrpc/protobuf/well-known.js';
import * as eventMessages from '../../src/shim/protocol/event-messages.js';
import * as taskMessages from '../../src/shim/protocol/task-messages.js';
import { TASK_SERVICE, TaskRpcs } from '../../src/shim/protocol/task-service.js';
import * as containerdTypes from '../../src/shim/protocol/types.js';

const PROTO_ROOT = path.resolve(import.meta.dirname, '../../proto');
const PROTO_FILES = [
  'containerd/runtime/v2/task/shim.proto',
  'containerd/api/events/task.proto',
  'containerd/api/services/ttrpc/events/v1/events.proto',
  'containerd/ttrpc/request.proto',
];

type AnyMessageType = MessageType<unknown, unknown>;

function isMessageType(v: unknown): v is AnyMessageType {
  return typeof v === 'object' && v !== null && 'typeName' in v && 'shape' in v && 'encode' in v;
}

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) ? target : path.join(PROTO_ROOT, target));
  // keepCase: protobufjs's bundled google.protobuf types use proto names (type_url), so use them everywhere.
  root.loadSync(PROTO_FILES.map((f) => path.join(PROTO_ROOT, f)), { keepCase: true });
  root.resolveAll();
  return root;
}

const ours = new Map<string, AnyMessageType>();
for (const mod of [ttrpcMessages, wellKnown, eventMessages, taskMessages, containerdTypes]) {
  for (const v of Object.values(mod)) if (isMessageType(v)) ours.set(v.typeName, v);
}

/** A value for every field, chosen to exercise the encoding edge cases (multi-byte UTF-8, negative and 10-byte varints). */
function sample(type: AnyMessageType, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(type.shape)) {
    const one = (): unknown => sampleValue(name, spec, depth);
    if (spec.kind === 'map') out[name] = { a: '1', 'b/c': 'ünïcode', '': 'empty key' };
    else if (spec.repeated) out[name] = [one(), one()];
    else out[name] = one();
  }
  return out;
}

function sampleValue(name: string, spec: FieldSpec, depth: number): unknown {
  switch (spec.kind) {
    case 'string':
      return `${name}-✓-é-𝄞`;
    case 'bytes':
      return Uint8Array.from([0, 1, 2, 0xff, name.length]);
    case 'bool':
      return true;
    case 'uint32':
      return 0xffffffff;
    case 'int32':
      return -5;
    case 'int64':
      return -62135596800; // Go's zero time.Time in seconds, as gogoproto stdtime sends it
    case 'uint64':
      return Number.MAX_SAFE_INTEGER;
    case 'enum':
      return 2;
    case 'message':
      return sample(spec.type, depth + 1);
    default:
      throw new Error(`no sample for ${spec.kind}`);
  }
}

const snake = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Renames fields between our lowerCamel names and the proto names, guided by the schema (map keys stay as they are). */
function renameFields(type: AnyMessageType, value: Record<string, unknown>, direction: 'toProto' | 'fromProto'): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(type.shape)) {
    const from = direction === 'toProto' ? name : snake(name);
    const to = direction === 'toProto' ? snake(name) : name;
    if (!(from in value)) continue;
    const v = value[from];
    if (spec.kind === 'message' && v !== null && v !== undefined) {
      const rename = (x: unknown): Record<string, unknown> => renameFields(spec.type, x as Record<string, unknown>, direction);
      out[to] = spec.repeated ? (v as unknown[]).map(rename) : rename(v);
    } else {
      out[to] = v;
    }
  }
  return out;
}

/** Uint8Array/Buffer -> number[] everywhere, so values from both libraries compare structurally. */
function normalize(v: unknown): unknown {
  if (v instanceof Uint8Array) return [...v];
  if (Array.isArray(v)) return v.map(normalize);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  return v;
}

const toObjectOptions: protobuf.IConversionOptions = { longs: Number, enums: Number, bytes: Array, defaults: true, arrays: true, objects: true };

describe('protobuf schemas conform to the .proto files', () => {
  const root = loadRoot();

  it('defines every Task service RPC with the request and response types of shim.proto', () => {
    const svc = root.lookupService(TASK_SERVICE);
    const fromProto = Object.fromEntries(Object.values(svc.methods).map((m) => [m.name, [m.resolvedRequestType?.fullName, m.resolvedResponseType?.fullName]]));
    const fromTs = Object.fromEntries(Object.entries(TaskRpcs).map(([name, d]) => [name, [`.${d.request.typeName}`, `.${d.response.typeName}`]]));
    expect(fromTs).toEqual(fromProto);
    expect(Object.keys(fromProto)).toHaveLength(17);
  });

  it('defines the events Forward RPC as events.proto does', () => {
    const forward = root.lookupService(eventMessages.EVENTS_SERVICE).methods.Forward!;
    expect(forward.resolvedRequestType?.fullName).toBe(`.${eventMessages.ForwardRequest.typeName}`);
    expect(forward.resolvedResponseType?.fullName).toBe(`.${eventMessages.ForwardResponse.typeName}`);
  });

  it('has a schema for every message of the Task service and the task events', () => {
    const wanted = [
      ...Object.values(root.lookupService(TASK_SERVICE).methods).flatMap((m) => [m.resolvedRequestType!.fullName, m.resolvedResponseType!.fullName]),
      ...Object.values(eventMessages.TaskEvents).map((e) => `.${e.type.typeName}`),
    ].map((n) => n.slice(1));
    for (const name of wanted) expect(ours.has(name), name).toBe(true);
  });

  for (const [typeName, type] of ours) {
    it(`${typeName}: same fields, same bytes, decodes both ways`, () => {
      const pbType = root.lookupType(typeName);
      const protoFields = Object.fromEntries(
        pbType.fieldsArray.map((f) => {
          const kind = f instanceof protobuf.MapField ? `map<${f.keyType},${f.type}>` : f.resolvedType instanceof protobuf.Type ? `message ${f.resolvedType.fullName}` : f.resolvedType instanceof protobuf.Enum ? 'enum' : f.type;
          return [f.name, { no: f.id, kind, repeated: f.repeated && !(f instanceof protobuf.MapField) }];
        }),
      );
      const tsFields = Object.fromEntries(
        Object.entries(type.shape).map(([name, s]) => [snake(name), { no: s.no, kind: s.kind === 'map' ? 'map<string,string>' : s.kind === 'message' ? `message .${s.type.typeName}` : s.kind, repeated: s.repeated }]),
      );
      expect(tsFields).toEqual(protoFields);

      const value = sample(type);
      const ourBytes = type.encode(value);
      const theirBytes = pbType.encode(pbType.fromObject(renameFields(type, normalizeForProtobufjs(value), 'toProto'))).finish();
      expect(Buffer.from(ourBytes).toString('hex')).toBe(Buffer.from(theirBytes).toString('hex'));

      const decodedByThem = normalize(renameFields(type, pbType.toObject(pbType.decode(ourBytes), toObjectOptions), 'fromProto'));
      const decodedByUs = normalize(type.decode(theirBytes));
      expect(decodedByUs).toEqual(normalize(value));
      expect(decodedByThem).toEqual(normalize(value));

      // Defaults are omitted on the wire and come back as defaults.
      const empty = type.encode({});
      expect(empty.length).toBe(0);
      expect(normalize(type.decode(empty))).toEqual(normalize(renameFields(type, withoutNulls(pbType.toObject(pbType.decode(empty), toObjectOptions)), 'fromProto')));
    });
  }
});

/** protobufjs wants Buffers or arrays for bytes; plain arrays work for fromObject. */
function normalizeForProtobufjs(v: unknown): Record<string, unknown> {
  return normalize(v) as Record<string, unknown>;
}

/** protobufjs reports absent sub-messages as null where our decoder leaves them out. */
function withoutNulls(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== null));
}
