import { VrunError } from '../common/errors.js';

/** Docker-style sizes: a number with an optional b, k, m, g (case-insensitive, optional trailing b/ib). */
export function parseSize(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(value.trim());
  if (!m) throw new VrunError(`invalid value "${value}" for ${flag}: expected a size like 64m, 512k or 1g`, { kind: 'invalid' });
  const mult = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] as string).toLowerCase()] as number;
  const bytes = Math.floor(Number(m[1]) * mult);
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new VrunError(`invalid value "${value}" for ${flag}: out of range`, { kind: 'invalid' });
  return bytes;
}

export function parsePositiveNumber(value: string, flag: string, opts: { integer?: boolean; max?: number } = {}): number {
  const n = Number(value);
  const ok = value.trim() !== '' && Number.isFinite(n) && n > 0 && (!opts.integer || Number.isInteger(n)) && (opts.max === undefined || n <= opts.max);
  if (!ok) {
    throw new VrunError(`invalid value "${value}" for ${flag}: expected a positive ${opts.integer ? 'whole ' : ''}number${opts.max !== undefined ? ` up to ${opts.max}` : ''}`, { kind: 'invalid' });
  }
  return n;
}
