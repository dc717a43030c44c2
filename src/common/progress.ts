/**
 * A one-line progress display on stderr for work the user waits for (pull, unpack, guest-image build).
 * On a terminal it redraws in place; otherwise (CI, pipes) it prints a line per step and at most one
 * update every few seconds, so logs stay readable.
 */
export interface Progress {
  /** Begin a named step; `total` in units (bytes, files) if known. */
  step(name: string, total?: number): void;
  /** Report that `done` units of the current step are complete. */
  update(done: number): void;
  /** End the current step with a final status word. */
  done(status?: string): void;
}

function formatUnits(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n}`;
}

export function createProgress(opts: { stream?: NodeJS.WriteStream; quiet?: boolean; bytes?: boolean } = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  const tty = Boolean(stream.isTTY);
  const fmt = opts.bytes === false ? (n: number) => String(n) : formatUnits;
  let name = '';
  let total: number | undefined;
  let started = 0;
  let lastPrint = 0;

  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
  const render = (done: number) => {
    if (opts.quiet) return;
    const pct = total ? ` ${Math.min(100, Math.floor((done / total) * 100))}%` : '';
    const bar = total ? ` [${'#'.repeat(Math.floor((Math.min(done, total) / total) * 20)).padEnd(20, '.')}]` : '';
    const line = `${name}${bar}${pct} ${fmt(done)}${total ? `/${fmt(total)}` : ''} ${elapsed()}`;
    if (tty) stream.write(`\r\x1b[2K${line}`);
    else if (Date.now() - lastPrint > 5000) {
      stream.write(`${line}\n`);
      lastPrint = Date.now();
    }
  };

  return {
    step(n, t) {
      name = n;
      total = t;
      started = Date.now();
      lastPrint = Date.now();
      if (opts.quiet) return;
      if (tty) stream.write(`\r\x1b[2K${name}...`);
      else stream.write(`${name}...\n`);
    },
    update(done) {
      render(done);
    },
    done(status = 'done') {
      if (opts.quiet) return;
      const line = `${name}: ${status} (${elapsed()})`;
      stream.write(tty ? `\r\x1b[2K${line}\n` : `${line}\n`);
    },
  };
}
