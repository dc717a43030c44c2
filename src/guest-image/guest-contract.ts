/**
 * What the host and a vrun guest (the image built here: guest-image/vrun-init and the agent) agree on, whichever
 * VMM runs it: the kernel command line every guest boots with and the console lines the init prints.
 */

/**
 * The kernel command line every vrun guest gets; the VMM adds its own device entries (virtio_mmio.device=).
 * reboot=t and panic=-1 turn a reboot and a panic into an immediate triple-fault reset, which both VMMs treat
 * as the end of the VM (QEMU runs with -no-reboot).
 */
export const BASE_CMDLINE = 'console=ttyS0 reboot=t panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd tsc=reliable no_timer_check';

/** The init's readiness line, with the guest's uptime in seconds. */
export const READY_PATTERN = /VRUN-READY (\d+\.\d+)/;

/** The line the guest init prints before it ends, with its status: every backend reads the status from it. */
export const GUEST_EXIT_PATTERN = /VRUN-EXIT status=(\d{1,3})\b/;
