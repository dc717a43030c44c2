import { describe, expect, it } from 'vitest';
import { terminalSafe, terminalSafeError, terminalSafeJson } from '../../src/common/terminal-text.js';

/** Any character a terminal could act on: C0 but \n and \t, DEL, C1, bidi controls. */
const ACTIVE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u; // eslint-disable-line no-control-regex

describe('terminalSafe (text a guest chose, on its way to a terminal)', () => {
  it('shows ESC[2J (clear screen) as inert text', () => {
    const out = terminalSafe('before\u001b[2Jafter');
    expect(out).toBe('before\\x1b[2Jafter');
    expect(out).not.toMatch(ACTIVE);
  });

  it('defuses an OSC 52 clipboard write, BEL- and ST-terminated', () => {
    for (const seq of ['\u001b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\u0007', '\u001b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\u001b\\']) {
      const out = terminalSafe(`error: ${seq} done`);
      expect(out).not.toMatch(ACTIVE);
      expect(out).toContain('\\x1b]52;c;');
    }
  });

  it('defuses the one-byte C1 CSI (U+009B), other C1 controls and DEL', () => {
    const out = terminalSafe('a\u009b2Jb\u009d8;;http://evil\u009cc\u007fd\u0085e');
    expect(out).toBe('a\\x9b2Jb\\x9d8;;http://evil\\x9cc\\x7fd\\x85e');
    expect(out).not.toMatch(ACTIVE);
  });

  it('keeps \\n and \\t, shows \\r, NUL and BS (which could overwrite what came before)', () => {
    expect(terminalSafe('one\n\ttwo')).toBe('one\n\ttwo');
    expect(terminalSafe('real error\rfake text\u0008\u0000')).toBe('real error\\x0dfake text\\x08\\x00');
    expect(terminalSafe('one\n\ttwo', { singleLine: true })).toBe('one  two');
  });

  it('shows bidi overrides (Trojan Source) and keeps ordinary Unicode', () => {
    expect(terminalSafe('abc\u202edcb\u2066x\u2069')).toBe('abc\\u202edcb\\u2066x\\u2069');
    expect(terminalSafe('héllo wörld – ✓ 日本')).toBe('héllo wörld – ✓ 日本');
  });

  it('bounds the length and says how much was cut', () => {
    const out = terminalSafe('x'.repeat(100_000), { maxLength: 100 });
    expect(out.startsWith('x'.repeat(100))).toBe(true);
    expect(out).toMatch(/… \[99900 more characters\]$/);
    expect(out.length).toBeLessThan(140);
    // Escapes count toward the bound: a flood of ESC cannot grow the output past it either.
    expect(terminalSafe('\u001b'.repeat(10_000), { maxLength: 64 }).length).toBeLessThan(100);
    expect(terminalSafe('short')).toBe('short');
  });

  it('makes error messages safe', () => {
    expect(terminalSafeError(new Error('agent: \u001b[31mred'))).toBe('agent: \\x1b[31mred');
    expect(terminalSafeError('\u009b')).toBe('\\x9b');
  });
});

describe('terminalSafeJson (inspect, stats --format json)', () => {
  it('escapes what JSON.stringify leaves raw (DEL, C1, bidi) and still parses to the same value', () => {
    const value = { Error: 'x\u001b[2J\u009b31m\u007f\u202e\u0007', Kernel: '6.1.0 ✓' };
    const json = terminalSafeJson(value, 2);
    expect(json).not.toMatch(ACTIVE);
    expect(JSON.parse(json)).toEqual(value);
    // Plain JSON.stringify would have let U+009B (a CSI to many terminals) through raw.
    expect(JSON.stringify(value)).toMatch(/\u009b/);
  });
});
