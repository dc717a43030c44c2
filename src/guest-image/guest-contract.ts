/**
 * What the host and a vrun guest (the image built here: guest-image/vrun-init and the agent) agree on, whichever
 * VMM runs it: the kernel command line every guest boots with and the console lines the init prints.
 */

/**
 * The kernel command line every vrun guest gets; the VMM adds its own device entries (virtio_mmio.device=).
 * reboot=t and panic=-1 turn a reboot and a panic into an immediate triple-fault reset, which both VMMs treat
 * as the end of the VM (QEMU runs with -no-reboot).
 */
/**
 * dummy.numdummies=0: the built-in dummy driver (there for privileged containers) would make a dummy0 nobody
 * asked for. fb_tunnels_only_for_init_net=1: the built-in SIT driver's fallback sit0 stays in the guest's own
 * namespace, so a container with a namespace of its own (--network none) has only lo, as in Docker.
 */
export const BASE_CMDLINE =
  'console=ttyS0 reboot=t panic=-1 i8042.noaux i8042.nomux i8042.dumbkbd tsc=reliable no_timer_check dummy.numdummies=0 sysctl.net.core.fb_tunnels_only_for_init_net=1';

/**
 * Tells the init that the userland image is /dev/pmem0, to mount with DAX (guest-image/vrun-init); the VMM that
 * maps the image as persistent memory adds it.
 */
export const USERLAND_PMEM_PARAM = 'vrun.userland=pmem';

/** The init's readiness line, with the guest's uptime in seconds. */
export const READY_PATTERN = /VRUN-READY (\d+\.\d+)/;

/** The line the guest init prints before it ends, with its status: every backend reads the status from it. */
export const GUEST_EXIT_PATTERN = /VRUN-EXIT status=(\d{1,3})\b/;
