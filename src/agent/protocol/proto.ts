/**
 * Loads the agent's .proto for both ends of the channel, with protobufjs: the service definition grpc-js takes
 * (methods with their serializers) and the field tables the agent's strict decoding checks requests against.
 * @grpc/proto-loader built the same service but also a descriptor of every message in descriptor.proto's own
 * format, which nothing here uses: that was about a third of the agent's start-up (protobufjs generating code
 * for descriptor.proto's types), 14 times as long under TCG. Messages convert as proto-loader's options below
 * would have them, so the types it generates still describe them; regenerate those after editing the .proto:
 *   node_modules/.bin/proto-loader-gen-types --longs=Number --enums=String --defaults --oneofs \
 *     --grpcLib=@grpc/grpc-js --importFileExtension=.js -O src/agent/protocol/generated proto/vrun/agent/v1/agent.proto
 *   (then delete src/agent/protocol/generated/agent.ts, whose `any` the lint refuses: the service is typed here instead,
 *   and prefix files with an empty interface with an eslint-disable of no-empty-object-type)
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import type { AgentDefinition } from './generated/vrun/agent/v1/Agent.js';
import { VrunError } from '../../common/errors.js';
import { sha256 } from '../../image/digest.js';
import type { Descriptors } from './strict-decode.js';

export const AGENT_SERVICE = 'vrun.agent.v1.Agent';

/** How decoded messages become objects: the type generator's options (see the header). */
const CONVERSION: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: true, oneofs: true };

/**
 * gRPC message size bound, both directions. Stdio chunks are far smaller (64 KiB); the largest legitimate
 * request is an OCI spec, which stays well under this.
 */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** The largest stdio chunk either side sends in one message. */
export const STDIO_CHUNK_BYTES = 64 * 1024;

/**
 * Where the .proto is: next to the bundled agent in the guest (/opt/vrun/agent.proto, shipped by
 * scripts/bundle.mjs), or in the repository's proto/ tree when run from dist/ or the sources.
 */
export function agentProtoPath(): string {
  if (process.env.VRUN_AGENT_PROTO) return process.env.VRUN_AGENT_PROTO;
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [
    path.join(here, 'agent.proto'),
    // a bundle in dist/<name>/, this file in src/agent/protocol/, its tsc output in dist/src/agent/protocol/
    path.resolve(here, '../../proto/vrun/agent/v1/agent.proto'),
    path.resolve(here, '../../../proto/vrun/agent/v1/agent.proto'),
    path.resolve(here, '../../../../proto/vrun/agent/v1/agent.proto'),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new VrunError(`agent.proto not found (looked at ${candidates.join(', ')}); set VRUN_AGENT_PROTO`);
  return found;
}

export interface AgentProto {
  /** The service as grpc-js takes it (addService, makeClientConstructor), typed by the generated definition. */
  service: AgentDefinition;
  /** Full name of each method's request message ("vrun.agent.v1.HealthRequest"), by method name. */
  requestTypes: Record<string, string>;
  /** Field tables of every message in the package, for strict-decode.ts. */
  descriptors: Descriptors;
}

let cached: AgentProto | undefined;

export function loadAgentProto(): AgentProto {
  if (!cached) {
    const file = agentProtoPath();
    let root: protobuf.Root;
    let agent: protobuf.Service;
    try {
      root = loadProtoRoot(file);
      root.resolveAll();
      agent = root.lookupService(AGENT_SERVICE);
    } catch (err) {
      throw new VrunError(`${file}: ${(err as Error).message}`);
    }
    const service: Record<string, grpc.MethodDefinition<object, object>> = {};
    const requestTypes: Record<string, string> = {};
    for (const m of agent.methodsArray) {
      const req = m.resolvedRequestType as protobuf.Type;
      const res = m.resolvedResponseType as protobuf.Type;
      service[m.name] = {
        path: `/${AGENT_SERVICE}/${m.name}`,
        requestStream: m.requestStream === true,
        responseStream: m.responseStream === true,
        requestSerialize: serializer(req),
        requestDeserialize: deserializer(req),
        responseSerialize: serializer(res),
        responseDeserialize: deserializer(res),
        // makeClientConstructor also names each method this way (client.createContainer as well as CreateContainer).
        originalName: m.name.charAt(0).toLowerCase() + m.name.slice(1),
      };
      requestTypes[m.name] = fullName(req);
    }
    if (!service.Health) throw new VrunError(`${file}: service ${AGENT_SERVICE} has no Health method`);
    // The generated AgentDefinition is the typed view of exactly this service object.
    cached = { service: service as unknown as AgentDefinition, requestTypes, descriptors: fieldTables(root, 'vrun.agent.v1') };
  }
  return cached;
}

/**
 * The build writes a parsed copy of the .proto beside the bundle's (`<file>.json`, protobufjs's JSON form):
 * parsing the text was 8% of the agent's start. The copy is used only while it names the .proto's sha256, so
 * an edited .proto is never read through a stale copy.
 */
export function loadProtoRoot(file: string): protobuf.Root {
  const text = readFileSync(file, 'utf8');
  let parsed: { protoSha256?: unknown; root?: protobuf.INamespace } | undefined;
  try {
    parsed = JSON.parse(readFileSync(`${file}.json`, 'utf8')) as typeof parsed;
  } catch {
    parsed = undefined;
  }
  if (parsed?.root && parsed.protoSha256 === sha256(text)) return protobuf.Root.fromJSON(parsed.root);
  return protobuf.parse(text, { keepCase: false }).root;
}

/** Writes `<file>.json` for loadProtoRoot (scripts/bundle.mjs, for dist/agent/agent.proto). */
export function writeParsedProto(file: string): void {
  const text = readFileSync(file, 'utf8');
  const root = protobuf.parse(text, { keepCase: false }).root;
  writeFileSync(`${file}.json`, JSON.stringify({ protoSha256: sha256(text), root: root.toJSON() }));
}

function fullName(t: protobuf.ReflectionObject): string {
  return t.fullName.replace(/^\./, '');
}

function serializer(type: protobuf.Type): grpc.serialize<object> {
  return (msg: object) => {
    if (Array.isArray(msg)) throw new Error(`cannot serialize an array as ${type.name}`);
    return type.encode(type.fromObject(msg)).finish() as Buffer;
  };
}

function deserializer(type: protobuf.Type): grpc.deserialize<object> {
  return (buf: Buffer) => type.toObject(type.decode(buf), CONVERSION);
}

/** Every message type of `pkg` (nested ones too), field number -> the message type it holds, if any. */
function fieldTables(root: protobuf.Root, pkg: string): Descriptors {
  const out: Descriptors = new Map();
  const visit = (ns: protobuf.NamespaceBase) => {
    for (const obj of ns.nestedArray) {
      if (obj instanceof protobuf.Type) {
        const fields = new Map<number, { messageType: string | null }>();
        for (const f of obj.fieldsArray) fields.set(f.id, { messageType: f.resolvedType instanceof protobuf.Type ? fullName(f.resolvedType) : null });
        out.set(fullName(obj), fields);
      }
      if (obj instanceof protobuf.Namespace) visit(obj);
    }
  };
  visit(root.lookup(pkg) as protobuf.Namespace);
  return out;
}
