import { VrunError, errorMessage } from '../../../common/errors.js';
import type { Logger } from '../../../common/log.js';
import type { VhostUserFrontend } from '../../vhost-user/frontend.js';
import type { ActivateContext, VirtioDevice } from '../mmio.js';

/**
 * virtio-fs (device id 26) as a vhost-user frontend: the device model only owns the config space
 * (the mount tag) and, when the driver starts the device, hands the queues to the backend
 * (virtiofsd). From then on the guest kicks the backend through KVM ioeventfds and the backend
 * interrupts the guest through an irqfd; no request passes through this process.
 */

export const VIRTIO_ID_FS = 26;
const TAG_SIZE = 36;
const QUEUE_SIZE = 128;

/** Where the frontend claims guest RAM lives, for ring addresses in the backend's address translation. */
export const VHOST_USER_ADDR_BASE = 0x1000_0000_0000;

export interface VhostQueueFds {
  kickFd: number;
  callFd: number;
}

export class VirtioFs implements VirtioDevice {
  readonly name: string;
  readonly deviceId = VIRTIO_ID_FS;
  readonly features = 0n;
  /** One high-priority queue and one request queue. */
  readonly queueMaxSizes = [QUEUE_SIZE, QUEUE_SIZE];
  readonly configSize = TAG_SIZE + 4;
  /** Set by the machine once the transport's eventfds exist. */
  queueFds: VhostQueueFds[] = [];
  private readonly config = Buffer.alloc(TAG_SIZE + 4);
  private started = false;

  constructor(
    readonly tag: string,
    private readonly backend: VhostUserFrontend,
    private readonly logger?: Logger,
  ) {
    const bytes = Buffer.from(tag, 'utf8');
    if (bytes.length === 0 || bytes.length > TAG_SIZE || !/^[A-Za-z0-9._-]+$/.test(tag)) {
      throw new VrunError(`virtio-fs tag ${JSON.stringify(tag)} must be 1-${TAG_SIZE} of [A-Za-z0-9._-]`);
    }
    this.name = `fs:${tag}`;
    bytes.copy(this.config, 0);
    this.config.writeUInt32LE(1, TAG_SIZE); // num_request_queues
  }

  readConfig(offset: number, size: number): number {
    return this.config.readUIntLE(offset, size);
  }

  writeConfig(): void {
    // The config space is read-only for the driver.
  }

  activate(ctx: ActivateContext): void {
    if (this.started) {
      ctx.fail('virtio-fs cannot be restarted without a new backend connection');
      return;
    }
    try {
      this.backend.setFeatures(ctx.features);
      ctx.queues.forEach((q, index) => {
        const fds = this.queueFds[index];
        if (!q || !fds) return;
        this.backend.setupVring({
          index,
          size: q.size,
          descUser: VHOST_USER_ADDR_BASE + q.config.descAddr,
          availUser: VHOST_USER_ADDR_BASE + q.config.availAddr,
          usedUser: VHOST_USER_ADDR_BASE + q.config.usedAddr,
          kickFd: fds.kickFd,
          callFd: fds.callFd,
        });
      });
      this.started = true;
    } catch (err) {
      ctx.fail(`virtio-fs backend refused the queues: ${errorMessage(err)}`);
    }
  }

  notify(): void {
    // Kicks go to the backend through ioeventfds; an exit here means a notify the eventfd did not match.
  }

  reset(): void {
    if (this.started) this.logger?.warn({ tag: this.tag }, 'virtio-fs reset by the guest: the share stays unavailable until the VM restarts');
  }
}
