/**
 * Loads the agent's .proto for both ends of the channel. The generated types in ./generated match the
 * loader options below; regenerate them after editing the .proto with:
 *   node_modules/.bin/proto-loader-gen-types --longs=Number --enums=String --defaults --oneofs \
 *     --grpcLib=@grpc/grpc-js --importFileExtension=.js -O src/agent/generated proto/vrun/agent/v1/agent.proto
 *   (then delete src/agent/generated/agent.ts, whose `any` the lint refuses: the service is typed here instead,
 *   and prefix files with an empty interface with an eslint-disable of no-empty-object-type)
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import type { AgentDefinition } from './generated/vrun/agent/v1/Agent.js';
import { VrunError } from '../common/errors.js';

export const AGENT_SERVICE = 'vrun.agent.v1.Agent';

/** Options shared by the agent, the client and the type generator (see the header). */
export const LOADER_OPTIONS: protoLoader.Options = { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true };

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
    path.resolve(here, '../../proto/vrun/agent/v1/agent.proto'),
    path.resolve(here, '../../../proto/vrun/agent/v1/agent.proto'),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new VrunError(`agent.proto not found (looked at ${candidates.join(', ')}); set VRUN_AGENT_PROTO`);
  return found;
}

export interface AgentProto {
  packageDefinition: protoLoader.PackageDefinition;
  service: AgentDefinition;
}

let cached: AgentProto | undefined;

export function loadAgentProto(): AgentProto {
  if (!cached) {
    const packageDefinition = protoLoader.loadSync(agentProtoPath(), LOADER_OPTIONS);
    const service = packageDefinition[AGENT_SERVICE];
    if (!service || !('Health' in service)) throw new VrunError(`agent.proto does not define service ${AGENT_SERVICE}`);
    // The generated AgentDefinition is the typed view of exactly this service object.
    cached = { packageDefinition, service: service as unknown as AgentDefinition };
  }
  return cached;
}
