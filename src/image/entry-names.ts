import { VrunError } from '../common/errors.js';

/** The longest entry name or symlink target a layer may hold (PATH_MAX). */
export const MAX_PATH = 4096;
const MAX_COMPONENT = 255;

/** Splits and checks an entry path; returns its components relative to the layer root ([] for the root). */
export function safeComponents(name: string, what: string): string[] {
  if (name.length > MAX_PATH) throw new VrunError(`${what}: entry name longer than ${MAX_PATH} bytes ("${name.slice(0, 80)}...")`);
  if (name.includes('\0')) throw new VrunError(`${what}: entry "${printable(name)}" contains a NUL byte`);
  if (name.startsWith('/')) throw new VrunError(`${what}: entry "${printable(name)}" has an absolute path (refused: layers must be relative)`);
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') throw new VrunError(`${what}: entry "${printable(name)}" contains ".." (refused: it would escape the layer)`);
    if (Buffer.byteLength(c) > MAX_COMPONENT) throw new VrunError(`${what}: entry "${printable(name)}" has a component longer than ${MAX_COMPONENT} bytes`);
    parts.push(c);
  }
  return parts;
}

/** An entry name as error messages quote it: cut short, control characters escaped (the name comes from the layer). */
export function printable(s: string): string {
  const t = s.length > 200 ? `${s.slice(0, 200)}...` : s;
  // eslint-disable-next-line no-control-regex
  return t.replace(/[\x00-\x1f\x7f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
