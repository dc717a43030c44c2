import { createWriteStream, type WriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { FrameDecoder, FrameType, encodeFrame } from './frames.js';

/**
 * container.log: the container's stdout and stderr as frames, in the order they arrived, so `vrun logs`
 * replays both streams apart and byte-exact. Bounded: past `maxBytes` the rest is dropped with a note
 * (a chatty container must not fill /run).
 */
export class ContainerLogWriter {
  private readonly out: WriteStream;
  private written = 0;
  private truncated = false;

  constructor(
    file: string,
    private readonly maxBytes = 256 << 20,
  ) {
    this.out = createWriteStream(file, { flags: 'a', mode: 0o600 });
  }

  write(stream: 'stdout' | 'stderr', chunk: Buffer): void {
    if (this.truncated) return;
    if (this.written + chunk.length > this.maxBytes) {
      this.truncated = true;
      this.out.write(encodeFrame(FrameType.stderr, `\n[vrun: log limit of ${this.maxBytes} bytes reached, further output dropped]\n`));
      return;
    }
    this.written += chunk.length;
    this.out.write(encodeFrame(stream === 'stdout' ? FrameType.stdout : FrameType.stderr, chunk));
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(resolve));
  }
}

/**
 * Replays container.log to the two sinks; with `follow`, keeps reading as the file grows until
 * `stillRunning()` says the container is done and the file has no more bytes.
 */
export async function replayContainerLog(
  file: string,
  sinks: { stdout: (b: Buffer) => void; stderr: (b: Buffer) => void },
  opts: { follow?: boolean; stillRunning?: () => Promise<boolean>; pollMs?: number } = {},
): Promise<void> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !opts.follow) return;
    throw err;
  }
  const decoder = new FrameDecoder();
  const buf = Buffer.alloc(1 << 16);
  let pos = 0;
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead > 0) {
        pos += bytesRead;
        for (const f of decoder.push(Buffer.from(buf.subarray(0, bytesRead)))) {
          if (f.type === FrameType.stdout) sinks.stdout(f.payload);
          else if (f.type === FrameType.stderr) sinks.stderr(f.payload);
        }
        continue;
      }
      if (!opts.follow) return;
      const running = opts.stillRunning ? await opts.stillRunning() : false;
      if (!running) {
        // One more read: output written between the last read and the status check.
        const again = await fh.read(buf, 0, buf.length, pos);
        if (again.bytesRead === 0) return;
        pos += again.bytesRead;
        for (const f of decoder.push(Buffer.from(buf.subarray(0, again.bytesRead)))) {
          if (f.type === FrameType.stdout) sinks.stdout(f.payload);
          else if (f.type === FrameType.stderr) sinks.stderr(f.payload);
        }
        continue;
      }
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 100));
    }
  } finally {
    await fh.close();
  }
}
