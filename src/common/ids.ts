import { VrunError } from './errors.js';

/**
 * The one rule for the ids and names vrun turns into directory names, file names and guest paths: container
 * ids (from containerd, the CRI, or vrun's own), exec ids, `vrun run --name` names, virtio-fs share tags.
 *
 * It is containerd's identifier rule (pkg/identifiers): letters and digits, in parts joined by one `.`, `_` or
 * `-`, at most 76 characters. So whatever containerd accepts passes (CRI ids are 64 hex digits; vrun makes 32 hex
 * digits and `exec-<hex>`), and an id can never be `.`, `..`, hold a `/`, be empty, start with a dot or dash (a
 * hidden file, an option to a tool), or grow past what a socket path has room for.
 */
const ID_GRAMMAR = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;
export const MAX_ID_LENGTH = 76;

export function isValidId(value: unknown, maxLength = MAX_ID_LENGTH): value is string {
  return typeof value === 'string' && value.length <= Math.min(maxLength, MAX_ID_LENGTH) && ID_GRAMMAR.test(value);
}

/**
 * Returns `value` when it is a valid id, else throws an 'invalid' VrunError naming it (`what` says which id:
 * "container id", "exec id", ...). The shim and the agent answer such an error with INVALID_ARGUMENT.
 * `maxLength` only ever lowers the limit (a virtio-fs tag has 36 bytes).
 */
export function checkId(what: string, value: unknown, maxLength = MAX_ID_LENGTH): string {
  if (isValidId(value, maxLength)) return value;
  const shown = typeof value === 'string' ? JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value) : `(${typeof value})`;
  throw new VrunError(`${what} ${shown} is not valid: use letters and digits, in parts joined by one ".", "_" or "-", at most ${Math.min(maxLength, MAX_ID_LENGTH)} characters`, {
    kind: 'invalid',
  });
}
