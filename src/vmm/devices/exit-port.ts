import type { BusDevice } from './bus.js';

/**
 * How a guest reports "I am done, with this status": one byte written to port 0x501 ends the VM
 * with that byte as its exit status. The port is QEMU's isa-debug-exit location, but the value is
 * taken as is (QEMU reports `(v << 1) | 1`); the guest init writes it through /dev/port right
 * before (or instead of) powering off, since without ACPI a Linux `poweroff` only halts the CPUs.
 * Only the first write counts: a guest cannot change its status once reported.
 */

export const EXIT_PORT_BASE = 0x501;
export const EXIT_PORT_SIZE = 1;

export class ExitPort implements BusDevice {
  readonly name = 'exit-port';
  status: number | undefined;

  constructor(private readonly onExit: (status: number) => void) {}

  read(_offset: number, _size: number): number {
    return 0xff;
  }

  write(_offset: number, _size: number, value: number): void {
    if (this.status !== undefined) return;
    this.status = value & 0xff;
    this.onExit(this.status);
  }
}
