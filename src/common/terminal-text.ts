import { errorMessage } from './errors.js';

/**
 * Text that reaches a person's terminal but was chosen by someone else: the guest (agent error messages,
 * GuestDetails such as the kernel release, console lines quoted in errors) is hostile, and a terminal obeys
 * what it is sent: ESC[2J clears the screen, OSC 52 writes the clipboard, OSC 8 makes links, C1 0x9b is a
 * one-byte CSI, a bare \r overwrites the line before it, bidi overrides reorder what the eye reads.
 *
 * Nothing is parsed: every character that could start or be part of such a sequence is shown as a visible
 * escape (`\x1b`, `\x9b`, `\x7f`, `\u202e`), so the rest of the sequence is inert text and a person can still
 * see what was sent. Kept: printable text, \n and \t (both turned into spaces with `singleLine`). The length is
 * bounded, counted in output characters.
 *
 * Not for the container's own stdout/stderr: that is the output the user asked for and passes raw (as in Docker).
 */
export interface TerminalTextOptions {
  /** Most output characters before the rest is cut (with a note of how much); default 4096. */
  maxLength?: number;
  /** Newlines and tabs become spaces too (a table cell, one status line). */
  singleLine?: boolean;
}

export const DEFAULT_TERMINAL_TEXT_MAX = 4096;

/** Unicode's bidirectional formatting characters (the "Trojan Source" set): they reorder how a line reads. */
function isBidiControl(cp: number): boolean {
  return cp === 0x061c || cp === 0x200e || cp === 0x200f || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/** A character a terminal may act on rather than print: C0 (but \n, \t), DEL, C1, bidi controls, lone surrogates. */
function isUnsafe(cp: number): boolean {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || isBidiControl(cp) || (cp >= 0xd800 && cp <= 0xdfff);
}

function visible(cp: number): string {
  return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u${cp.toString(16).padStart(4, '0')}`;
}

export function terminalSafe(text: string, opts: TerminalTextOptions = {}): string {
  const max = Math.max(16, opts.maxLength ?? DEFAULT_TERMINAL_TEXT_MAX);
  let out = '';
  let consumed = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0) as number;
    let piece: string;
    if (cp === 0x0a || cp === 0x09) piece = opts.singleLine ? ' ' : ch;
    else if (isUnsafe(cp)) piece = visible(cp);
    else piece = ch;
    if (out.length + piece.length > max) break;
    out += piece;
    consumed += ch.length;
  }
  if (consumed < text.length) out += `… [${text.length - consumed} more characters]`;
  return out;
}

/** An error's message, made safe to print (see terminalSafe). */
export function terminalSafeError(err: unknown, opts: TerminalTextOptions = {}): string {
  return terminalSafe(errorMessage(err), opts);
}

/**
 * JSON for a terminal: JSON.stringify already escapes C0 controls (so ESC is `\u001b`), but not DEL, C1 (U+009B
 * is a CSI to many terminals) or bidi controls; those become \u escapes too, so the output is the same JSON value
 * (a program parsing it sees the original strings) and inert on a terminal. They can only occur inside strings.
 */
export function terminalSafeJson(value: unknown, space?: number): string {
  const json = JSON.stringify(value, null, space);
  if (json === undefined) return 'null';
  let out = '';
  for (const ch of json) {
    const cp = ch.codePointAt(0) as number;
    out += (cp >= 0x7f && cp <= 0x9f) || isBidiControl(cp) ? `\\u${cp.toString(16).padStart(4, '0')}` : ch;
  }
  return out;
}
