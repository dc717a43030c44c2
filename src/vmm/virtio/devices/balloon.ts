import { errorMessage, VrunError } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import type { ActivateContext, VirtioDevice } from '../mmio.js';
import type { DescriptorChain, Virtqueue } from '../queue.js';

/**
 * virtio-balloon (device id 5) for free page reporting only (virtio 1.2 section 5.5.6.7): the guest hands free
 * ranges of its RAM to the reporting queue, and the host gives the memory behind them back, so a guest that
 * freed memory stops costing it. The host never asks the guest to inflate (num_pages stays 0).
 *
 * Linux numbers the queues by the ones that exist: inflate 0, deflate 1, then stats and free-page hinting only
 * with their features (not offered here), so the reporting queue is 2. A report is one chain of device-writable
 * buffers, each a free, page-aligned guest range (Linux: at most 32 of them, each 2^order pages). The whole
 * chain is checked before any memory is given back: a range that is not whole pages, or a buffer the wrong way
 * round, stops the device without touching guest RAM (the queue has already refused anything outside RAM).
 *
 * Inflate and deflate exist because the driver creates them. We never ask for inflation, and without
 * MUST_TELL_HOST the guest may use deflated pages at once, so their page lists are taken and returned
 * unread: ignoring them is always safe, and nothing a guest writes there reaches host memory.
 */

export const VIRTIO_ID_BALLOON = 5;
export const VIRTIO_BALLOON_F_REPORTING = 5n;
export const INFLATE_QUEUE = 0;
export const DEFLATE_QUEUE = 1;
export const REPORTING_QUEUE = 2;
/** Linux refuses a reporting queue shorter than PAGE_REPORTING_CAPACITY (32). */
const QUEUE_SIZE = 128;
/** num_pages and actual, both le32. */
const CONFIG_SIZE = 8;
const PAGE = 4096;
/** Ranges per report: Linux sends at most 32; more is no report of Linux's, and is refused. */
export const MAX_REPORT_RANGES = 256;
/** Chains taken per notification before the rest waits for the next loop turn, so other devices get the loop. */
const PASS_CHAINS = 16;

/**
 * Gives back the host memory behind a view of guest RAM (page-aligned, non-empty); it reads as zeros
 * afterwards. Throws when the host refuses.
 */
export type DiscardRam = (view: Buffer) => void;

/**
 * A DiscardRam for guest RAM mapped from one file as `ram`, whose offsets are the file's: `discard` gets the
 * file range. A view of any other memory is refused, so nothing but guest RAM can ever be given back.
 */
export function ramFileDiscarder(ram: Buffer, discard: (offset: number, length: number) => void): DiscardRam {
  return (view) => {
    const offset = view.byteOffset - ram.byteOffset;
    if (view.buffer !== ram.buffer || offset < 0 || offset + view.length > ram.length) {
      throw new VrunError(`a view of ${view.length} bytes at ${view.byteOffset} is not guest RAM`);
    }
    discard(offset, view.length);
  };
}

export interface BalloonStats {
  /** Reports (chains) completed and the ranges and bytes they gave back. */
  reports: number;
  rangesDiscarded: number;
  bytesDiscarded: number;
  /** Ranges the host refused to give back (they stay guest memory; nothing else changes). */
  discardErrors: number;
  /** Page lists on inflate or deflate, which we never ask for: returned unread. */
  inflateChains: number;
  deflateChains: number;
}

type PassOutcome = 'done' | 'budget' | { broken: string };

export class VirtioBalloon implements VirtioDevice {
  readonly name = 'balloon';
  readonly deviceId = VIRTIO_ID_BALLOON;
  readonly features = 1n << VIRTIO_BALLOON_F_REPORTING;
  readonly queueMaxSizes = [QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE];
  readonly configSize = CONFIG_SIZE;
  readonly stats: BalloonStats = { reports: 0, rangesDiscarded: 0, bytesDiscarded: 0, discardErrors: 0, inflateChains: 0, deflateChains: 0 };
  private ctx: ActivateContext | undefined;
  /** What the driver last wrote to `actual` (pages it holds in the balloon): only echoed back. */
  private actual = 0;
  private later = false;

  constructor(
    private readonly discard: DiscardRam,
    private readonly logger?: Logger,
  ) {}

  readConfig(offset: number, size: number): number {
    const config = Buffer.alloc(CONFIG_SIZE);
    config.writeUInt32LE(this.actual, 4);
    return config.readUIntLE(offset, size);
  }

  writeConfig(offset: number, size: number, value: number): void {
    // Only `actual` is the driver's; num_pages is the device's and stays 0.
    const config = Buffer.alloc(CONFIG_SIZE);
    config.writeUInt32LE(this.actual, 4);
    config.writeUIntLE(value, offset, size);
    this.actual = config.readUInt32LE(4);
  }

  activate(ctx: ActivateContext): void {
    this.ctx = ctx;
  }

  notify(index: number): void {
    const ctx = this.ctx;
    const q = ctx?.queues[index];
    if (!ctx || !q) return;
    const out = index === REPORTING_QUEUE ? this.reportPass(q) : this.pageListPass(q, index);
    if (typeof out === 'object') return this.broke(out.broken);
    if (q.needsInterrupt()) ctx.signalUsed();
    if (out === 'budget' && !this.later) {
      this.later = true;
      setImmediate(() => {
        this.later = false;
        if (this.ctx === ctx) this.notify(index);
      });
    }
  }

  reset(): void {
    this.ctx = undefined;
    this.actual = 0;
  }

  debugState(): Record<string, unknown> {
    return { ...this.stats, actual: this.actual };
  }

  private reportPass(q: Virtqueue): PassOutcome {
    for (let n = 0; n < PASS_CHAINS; n++) {
      const chain = q.pop();
      if (!chain) return q.error ? { broken: q.error.message } : 'done';
      const problem = reportProblem(chain);
      if (problem) return { broken: problem };
      for (const range of chain.writable) this.giveBack(range);
      this.stats.reports++;
      q.pushUsed(chain, 0);
    }
    return 'budget';
  }

  private pageListPass(q: Virtqueue, index: number): PassOutcome {
    for (let n = 0; n < PASS_CHAINS; n++) {
      const chain = q.pop();
      if (!chain) return q.error ? { broken: q.error.message } : 'done';
      if (chain.writable.length > 0) return { broken: `${index === INFLATE_QUEUE ? 'inflate' : 'deflate'} chain ${chain.head} has device-writable buffers` };
      if (index === INFLATE_QUEUE) this.stats.inflateChains++;
      else this.stats.deflateChains++;
      q.pushUsed(chain, 0);
    }
    return 'budget';
  }

  private giveBack(range: Buffer): void {
    try {
      this.discard(range);
      this.stats.rangesDiscarded++;
      this.stats.bytesDiscarded += range.length;
    } catch (err) {
      // The range simply stays the guest's memory; a host that refuses once is logged once.
      if (this.stats.discardErrors++ === 0) this.logger?.warn({ device: this.name, err: errorMessage(err) }, 'cannot give a reported free range back');
    }
  }

  /** The guest broke the protocol: nothing touches the rings again until the driver resets the device. */
  private broke(message: string): void {
    const ctx = this.ctx;
    this.ctx = undefined;
    ctx?.fail(message);
  }
}

/** Why a report cannot be honoured, or undefined. Views are of guest RAM, whose regions start page-aligned in it. */
function reportProblem(chain: DescriptorChain): string | undefined {
  if (chain.readable.length > 0) return `report chain ${chain.head} has device-readable buffers`;
  if (chain.writable.length > MAX_REPORT_RANGES) return `report chain ${chain.head} has ${chain.writable.length} ranges, more than ${MAX_REPORT_RANGES}`;
  for (const [i, r] of chain.writable.entries()) {
    if (r.length === 0 || r.length % PAGE !== 0 || r.byteOffset % PAGE !== 0) {
      return `report chain ${chain.head} range ${i} (${r.length} bytes) is not whole ${PAGE}-byte pages`;
    }
  }
  return undefined;
}
