import { describe, expect, it } from 'vitest';
import { parsePositiveNumber, parseSize } from '../../src/cli/units.js';

describe('CLI value parsing', () => {
  it('parses Docker-style sizes', () => {
    expect(parseSize('64m', '--memory')).toBe(64 * 1024 * 1024);
    expect(parseSize('512K', '--memory')).toBe(512 * 1024);
    expect(parseSize('1g', '--memory')).toBe(1024 ** 3);
    expect(parseSize('1GiB', '--memory')).toBe(1024 ** 3);
    expect(parseSize('4096', '--memory')).toBe(4096);
  });
  it('rejects bad sizes naming the flag and the value', () => {
    expect(() => parseSize('lots', '--memory')).toThrow('invalid value "lots" for --memory');
    expect(() => parseSize('-5m', '--memory')).toThrow(/--memory/);
    expect(() => parseSize('0', '--memory')).toThrow(/out of range/);
  });
  it('parses positive numbers with limits', () => {
    expect(parsePositiveNumber('1.5', '--cpus')).toBe(1.5);
    expect(() => parsePositiveNumber('0', '--cpus')).toThrow(/--cpus/);
    expect(() => parsePositiveNumber('2.5', '--pids-limit', { integer: true })).toThrow(/whole/);
    expect(() => parsePositiveNumber('abc', '--pids-limit', { integer: true })).toThrow(/"abc"/);
  });
});
