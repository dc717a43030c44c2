import { terminalSafe } from '../common/terminal-text.js';

/**
 * Docker's column layout: every column as wide as its widest cell plus three spaces, the last one unpadded.
 * Every cell is made one line with no control characters first: cells may quote the guest or state on disk.
 */
export function printTable(rows: string[][], out: NodeJS.WritableStream = process.stdout): void {
  const safe = rows.map((r) => r.map((c) => terminalSafe(c, { singleLine: true, maxLength: 256 })));
  const widths = safe[0]?.map((_, i) => Math.max(...safe.map((r) => (r[i] ?? '').length))) ?? [];
  for (const r of safe) out.write(`${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3))).join('')}\n`);
}
