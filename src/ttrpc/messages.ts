/**
 * The ttrpc envelope messages (github.com/containerd/ttrpc/request.proto): every request frame carries a
 * Request naming the service and method, every response frame a Response with a google.rpc.Status.
 */
import { message, pb, type MessageOf } from './protobuf/schema.js';
import { Any } from './protobuf/well-known.js';

export const RpcStatus = message('google.rpc.Status', {
  code: pb.int32(1),
  message: pb.string(2),
  details: pb.repeated.message(3, Any),
});
export type RpcStatus = MessageOf<typeof RpcStatus>;

export const KeyValue = message('ttrpc.KeyValue', {
  key: pb.string(1),
  value: pb.string(2),
});
export type KeyValue = MessageOf<typeof KeyValue>;

export const Request = message('ttrpc.Request', {
  service: pb.string(1),
  method: pb.string(2),
  payload: pb.bytes(3),
  timeoutNano: pb.int64(4),
  metadata: pb.repeated.message(5, KeyValue),
});
export type Request = MessageOf<typeof Request>;

export const Response = message('ttrpc.Response', {
  status: pb.message(1, RpcStatus),
  payload: pb.bytes(2),
});
export type Response = MessageOf<typeof Response>;

/** Request metadata as ttrpc's Go MD: keys lower-cased (lookups there are), each key with its values in order. */
export type Metadata = ReadonlyMap<string, readonly string[]>;

export function metadataFromPairs(pairs: readonly KeyValue[]): Metadata {
  const md = new Map<string, string[]>();
  for (const { key, value } of pairs) {
    const k = key.toLowerCase();
    const list = md.get(k);
    if (list) list.push(value);
    else md.set(k, [value]);
  }
  return md;
}

export function metadataToPairs(md: Readonly<Record<string, string | readonly string[]>>): KeyValue[] {
  const out: KeyValue[] = [];
  for (const [key, v] of Object.entries(md)) {
    for (const value of typeof v === 'string' ? [v] : v) out.push({ key: key.toLowerCase(), value });
  }
  return out;
}

/** containerd passes the namespace of every shim call in this metadata key (namespaces.TTRPCHeader). */
export const NAMESPACE_METADATA_KEY = 'containerd-namespace-ttrpc';
