/**
 * Rejects requests that carry fields the .proto does not define. protobuf decoders silently drop unknown
 * fields; for a hostile peer that hides mistakes and probing, so the agent walks the wire bytes against
 * the message descriptors first and refuses anything it would not understand.
 */
interface FieldInfo {
  messageType: string | null;
}

/** Per message (full name), its fields by number; made by proto.ts from the .proto. */
export type Descriptors = Map<string, Map<number, FieldInfo>>;

function readVarint(buf: Uint8Array, pos: number): [number, number] {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const b = buf[pos++] as number;
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return [value, pos];
    mul *= 128;
  }
  throw new Error('varint longer than 10 bytes');
}

/** Returns a description of the first unknown field or malformed part, or null when the message is clean. */
export function findUnknownField(buf: Uint8Array, typeName: string, descriptors: Descriptors, depth = 0): string | null {
  const fields = descriptors.get(typeName);
  if (!fields) return `no descriptor for ${typeName}`;
  if (depth > 16) return `message nesting deeper than 16 at ${typeName}`;
  let pos = 0;
  try {
    while (pos < buf.length) {
      const [tag, afterTag] = readVarint(buf, pos);
      pos = afterTag;
      const number = Math.floor(tag / 8);
      const wire = tag % 8;
      const field = fields.get(number);
      if (!field) return `unknown field number ${number} in ${typeName.split('.').pop()}`;
      switch (wire) {
        case 0:
          pos = readVarint(buf, pos)[1];
          break;
        case 1:
          pos += 8;
          break;
        case 5:
          pos += 4;
          break;
        case 2: {
          const [len, start] = readVarint(buf, pos);
          const end = start + len;
          if (end > buf.length) return `truncated field ${number} in ${typeName}`;
          if (field.messageType) {
            const inner = findUnknownField(buf.subarray(start, end), field.messageType, descriptors, depth + 1);
            if (inner) return inner;
          }
          pos = end;
          break;
        }
        default:
          return `unsupported wire type ${wire} for field ${number} in ${typeName}`;
      }
      if (pos > buf.length) return `truncated field ${number} in ${typeName}`;
    }
  } catch (err) {
    return `malformed ${typeName}: ${(err as Error).message}`;
  }
  return null;
}
