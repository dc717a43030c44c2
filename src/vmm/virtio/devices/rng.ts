import { randomFillSync } from 'node:crypto';
import type { ActivateContext, VirtioDevice } from '../mmio.js';

/**
 * virtio-rng (device id 4): one request queue; every writable buffer the guest posts comes back
 * filled from the host's CSPRNG. The bytes handed out per notification are bounded so a guest cannot
 * keep the event loop busy with one giant request.
 */

export const VIRTIO_ID_RNG = 4;
const QUEUE_SIZE = 64;
/** Bytes per chain; the guest asks again for more (Linux asks for at most a page anyway). */
const MAX_PER_CHAIN = 64 * 1024;

export class VirtioRng implements VirtioDevice {
  readonly name = 'rng';
  readonly deviceId = VIRTIO_ID_RNG;
  readonly features = 0n;
  readonly queueMaxSizes = [QUEUE_SIZE];
  readonly configSize = 0;
  private ctx: ActivateContext | undefined;
  /** Bytes of entropy handed to the guest, for stats. */
  served = 0;

  readConfig(): number {
    return 0;
  }

  writeConfig(): void {}

  activate(ctx: ActivateContext): void {
    this.ctx = ctx;
  }

  notify(index: number): void {
    const q = this.ctx?.queues[index];
    if (!this.ctx || !q) return;
    for (let chain = q.pop(); chain; chain = q.pop()) {
      let left = MAX_PER_CHAIN;
      let written = 0;
      for (const buf of chain.writable) {
        if (left === 0) break;
        const n = Math.min(buf.length, left);
        randomFillSync(buf, 0, n);
        written += n;
        left -= n;
      }
      this.served += written;
      q.pushUsed(chain, written);
    }
    if (q.error) this.ctx.fail(q.error.message);
    else if (q.needsInterrupt()) this.ctx.signalUsed();
  }

  reset(): void {
    this.ctx = undefined;
  }
}
