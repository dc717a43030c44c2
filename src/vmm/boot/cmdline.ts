import { VrunError } from '../../common/errors.js';
import { CMDLINE_MAX_SIZE, hex, type VirtioMmioSlot } from '../layout.js';

/**
 * The kernel command line. The defaults keep boot-time port probes off the slow path through the
 * host: `io_delay=none` stops writes to port 0x80, `8250.nr_uarts=1` stops probes of COM2-4, `pci=off`
 * stops the 0xcf8 config probe; `reboot=k` makes every reboot (and, with `panic=1`, every panic) end
 * in the i8042 reset the VMM turns into a VM exit.
 */
export const DEFAULT_CMDLINE_PARAMS = [
  'console=ttyS0',
  'reboot=k',
  'panic=1',
  'pci=off',
  'nomodule',
  'io_delay=none',
  '8250.nr_uarts=1',
  'i8042.noaux',
  'i8042.nomux',
  'i8042.dumbkbd',
  'tsc=reliable',
  'no_timer_check',
];

export class KernelCmdline {
  private readonly parts: string[] = [];
  private length = 0;

  /** `capacity` counts the terminating NUL, like the kernel's COMMAND_LINE_SIZE. */
  constructor(readonly capacity = CMDLINE_MAX_SIZE) {
    if (!Number.isInteger(capacity) || capacity < 2) throw new VrunError(`kernel command line capacity ${capacity} is too small`);
  }

  /** Adds one or more space-separated parameters; quoted values with spaces are kept whole. */
  add(params: string): this {
    validate(params);
    const trimmed = params.trim();
    if (trimmed === '') return this;
    const extra = (this.parts.length > 0 ? 1 : 0) + trimmed.length;
    if (this.length + extra + 1 > this.capacity) {
      throw new VrunError(
        `kernel command line too long: adding "${trimmed.slice(0, 60)}" makes ${this.length + extra} bytes, the kernel accepts ${this.capacity - 1}`,
      );
    }
    this.parts.push(trimmed);
    this.length += extra;
    return this;
  }

  addVirtioMmio(slot: VirtioMmioSlot): this {
    if (slot.size % 1024 !== 0) throw new VrunError(`virtio-mmio window size ${slot.size} is not a multiple of 1 KiB`);
    return this.add(`virtio_mmio.device=${slot.size / 1024}K@${hex(slot.addr)}:${slot.irq}`);
  }

  toString(): string {
    return this.parts.join(' ');
  }

  /** NUL-terminated, as the kernel reads it from guest memory. */
  toBytes(): Buffer {
    return Buffer.from(`${this.toString()}\0`, 'latin1');
  }
}

/**
 * Printable ASCII only: a NUL would silently truncate what the kernel sees, control characters
 * end up in logs, and unbalanced quotes change how the rest of the line is split.
 */
function validate(params: string): void {
  for (let i = 0; i < params.length; i++) {
    const c = params.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) {
      throw new VrunError(`kernel command line parameter "${printable(params)}" contains a forbidden character (code ${c}) at position ${i}`);
    }
  }
  if ((params.match(/"/g)?.length ?? 0) % 2 !== 0) {
    throw new VrunError(`kernel command line parameter "${printable(params)}" has an unbalanced double quote`);
  }
}

function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, 80);
}

export function buildCmdline(opts: { base?: readonly string[]; extra?: string; virtio?: readonly VirtioMmioSlot[]; capacity?: number }): KernelCmdline {
  const cmd = new KernelCmdline(opts.capacity);
  for (const p of opts.base ?? DEFAULT_CMDLINE_PARAMS) cmd.add(p);
  for (const slot of opts.virtio ?? []) cmd.addVirtioMmio(slot);
  // User parameters go last; everything after "--" goes to init, so devices must precede it.
  if (opts.extra) cmd.add(opts.extra);
  return cmd;
}
