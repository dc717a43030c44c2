import net from 'node:net';
import { rmSync } from 'node:fs';
import type { Logger } from '../../../common/log.js';
import type { ConsolePort } from './console.js';

/**
 * A console port surfaced on the host as a unix socket: one client at a time; its bytes go to the
 * guest and the guest's bytes go to it, with backpressure both ways (the socket pauses while the
 * port's backlog is above its high-water mark). Bytes the guest sends while no client is connected
 * are dropped, like a serial line with nobody listening.
 */
export class PortSocket {
  private readonly server: net.Server;
  private client: net.Socket | undefined;

  private constructor(
    readonly path: string,
    private readonly port: ConsolePort,
    private readonly logger?: Logger,
  ) {
    this.server = net.createServer((s) => this.accept(s));
    port.on('data', (d) => {
      if (this.client && !this.client.write(d)) this.logger?.debug({ port: port.name }, 'console socket client is slow');
    });
    port.on('drain', () => this.client?.resume());
  }

  static async listen(path: string, port: ConsolePort, logger?: Logger): Promise<PortSocket> {
    rmSync(path, { force: true });
    const ps = new PortSocket(path, port, logger);
    await new Promise<void>((resolve, reject) => {
      ps.server.once('error', reject);
      ps.server.listen(path, () => {
        ps.server.off('error', reject);
        resolve();
      });
    });
    return ps;
  }

  private accept(s: net.Socket): void {
    if (this.client) {
      s.destroy();
      return;
    }
    this.client = s;
    s.on('data', (d: Buffer) => {
      if (!this.port.write(d)) s.pause();
    });
    const gone = () => {
      if (this.client === s) this.client = undefined;
    };
    s.on('close', gone);
    s.on('error', gone);
  }

  close(): void {
    this.client?.destroy();
    this.server.close();
    rmSync(this.path, { force: true });
  }
}
