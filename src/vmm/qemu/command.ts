import { VrunError } from '../../common/errors.js';
import { placeUserlandPmem, type UserlandPmem } from './userland-pmem.js';

/**
 * The qemu-system-x86_64 command line for a vrun guest on QEMU's microvm machine: no firmware, no PCI,
 * virtio over MMIO (modern only), guest RAM as a shared memfd so vhost-user-fs (virtiofsd) can map it.
 */
export type Accel = 'kvm' | 'tcg';

export interface QemuSpec {
  kernel: string;
  initrd?: string;
  cmdline: string;
  vcpus: number;
  memoryMiB: number;
  accel: Accel;
  /** virtio-console ports surfaced as unix sockets on the host (QEMU listens). */
  ports?: { name: string; socketPath: string }[];
  /** vhost-user-fs shares: virtiofsd listens on socketPath, the guest mounts `tag`. */
  shares?: { tag: string; socketPath: string }[];
  /**
   * virtio-net NICs on taps: `fd` one the jailer opened and passes down (the jailed launch), or `ifname` one
   * QEMU opens itself by name (needs /dev/net/tun and the tap's ownership, or root). `mtu` becomes the
   * device's host_mtu (VIRTIO_NET_F_MTU), so the guest starts with the pod interface's MTU.
   */
  nets?: QemuNic[];
  /**
   * Read-only virtio-blk disks (the guest's shared userland image): QEMU opens the file read-only and the
   * device says so to the guest; `serial` is how the guest init finds it. Host page cache serves every pod.
   */
  readonlyDisks?: { path: string; serial: string }[];
  /**
   * The shared userland image mapped read-only inside guest memory as persistent memory (userland-pmem.ts):
   * guest RAM (in two parts) and the image become NUMA nodes' memory backends, and the kernel command line
   * marks the image's range as pmem. The caller checks the placement first (placeUserlandPmem) to fall back to a disk.
   */
  userlandPmem?: UserlandPmem;
  /**
   * virtio-balloon with free page reporting: pages the guest frees are reported, and QEMU discards them
   * (a hole punched in the memfd), so they leave the host. The balloon never inflates: nothing asks it to.
   */
  freePageReporting?: boolean;
  /** 9p shares (used by the KVM lab to share the host's /). */
  ninePShares?: { tag: string; path: string; readonly: boolean }[];
  /** Tests only: production launches have no QMP (nothing uses it, and it is one more way into QEMU). */
  qmpSocket?: string;
  /**
   * QEMU's own seccomp filter (-sandbox): no obsolete syscalls, no setuid/setgid, no fork/exec, no
   * scheduler/affinity changes. Off for the KVM lab, whose L1 QEMU runs tests that need none of this.
   */
  sandbox?: boolean;
  /** Caps TCG's translated-code cache (MiB); QEMU's default lets it grow to 1 GiB. */
  tcgTbMiB?: number;
  /** -cpu model; defaults to host under KVM and max under TCG (max exposes SVM, which the KVM lab needs). */
  cpu?: string;
  extraArgs?: string[];
}

export type QemuNic = ({ fd: number } | { ifname: string }) & { mac: string; mtu: number };

export const QEMU_BINARY = 'qemu-system-x86_64';

/** A path inside a QEMU option list (-blockdev, -object), where a comma would start the next option. */
function qemuOptionValue(p: string): string {
  if (!p.startsWith('/')) throw new VrunError(`QEMU disk path ${p} is not absolute`);
  return p.replace(/,/g, ',,');
}

export function qemuArgs(spec: QemuSpec): string[] {
  const pmem = spec.userlandPmem;
  const placed = pmem ? placeUserlandPmem(spec.memoryMiB, pmem.sizeMiB * 2 ** 20) : undefined;
  if (placed && !placed.ok) throw new VrunError(`the userland image cannot be mapped as persistent memory: ${placed.reason}`);
  const args = [
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-M',
    // Under TCG the guest has no kvmclock, so its wall-clock time comes from the CMOS RTC; without one the kernel
    // waits a second for it at boot and the guest's clock starts at 1970. Under KVM, kvmclock gives the time.
    // With the userland as pmem, RAM is the NUMA nodes' backends (below), not the machine's memory-backend.
    `microvm,x-option-roms=off,rtc=${spec.accel === 'kvm' ? 'off' : 'on'},acpi=off${pmem ? '' : ',memory-backend=mem'}${spec.accel === 'kvm' ? ',pit=off,pic=off' : ''}`,
    '-accel',
    spec.accel === 'tcg' ? `tcg,thread=multi${spec.tcgTbMiB ? `,tb-size=${spec.tcgTbMiB}` : ''}` : 'kvm',
    '-cpu',
    spec.cpu ?? (spec.accel === 'kvm' ? 'host' : 'max'),
    '-smp',
    String(spec.vcpus),
    '-m',
    `${spec.memoryMiB + (placed?.sizeMiB ?? 0)}M`,
    '-object',
    `memory-backend-memfd,id=mem,size=${placed?.lowMiB ?? spec.memoryMiB}M,share=on`,
    ...(placed && pmem
      ? [
          '-object',
          // readonly=on: QEMU maps the file PROT_READ and the range is a ROM (guest writes go nowhere, and
          // vhost-user does not hand ROM to virtiofsd); share=on: the pages are the host page cache's own.
          `memory-backend-file,id=userland,mem-path=${qemuOptionValue(pmem.path)},size=${placed.sizeMiB}M,share=on,readonly=on`,
          '-object',
          `memory-backend-memfd,id=mem-top,size=${placed.topMiB}M,share=on`,
          '-numa',
          'node,memdev=mem',
          '-numa',
          'node,memdev=userland',
          '-numa',
          'node,memdev=mem-top',
        ]
      : []),
    '-global',
    'virtio-mmio.force-legacy=false',
    '-serial',
    'stdio',
    '-kernel',
    spec.kernel,
    '-append',
    placed ? `${spec.cmdline} ${placed.cmdline}` : spec.cmdline,
    '-device',
    'virtio-rng-device',
  ];
  if (spec.initrd) args.push('-initrd', spec.initrd);
  if (spec.sandbox) args.push('-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny');
  if (spec.qmpSocket) args.push('-qmp', `unix:${spec.qmpSocket},server=on,wait=off`);
  const ports = spec.ports ?? [];
  if (ports.length > 0) {
    args.push('-device', `virtio-serial-device,max_ports=${ports.length + 1}`);
    ports.forEach((p, i) => {
      args.push('-chardev', `socket,id=port${i},path=${p.socketPath},server=on,wait=off`);
      args.push('-device', `virtserialport,chardev=port${i},name=${p.name}`);
    });
  }
  (spec.shares ?? []).forEach((s, i) => {
    args.push('-chardev', `socket,id=fs${i},path=${s.socketPath}`);
    args.push('-device', `vhost-user-fs-device,chardev=fs${i},tag=${s.tag}`);
  });
  (spec.nets ?? []).forEach((n, i) => {
    // vhost=off: vhost-net needs /dev/vhost-net and a kernel thread per queue acting for the jailed process.
    const backend = 'fd' in n ? `fd=${n.fd}` : `ifname=${n.ifname},script=no,downscript=no`;
    args.push('-netdev', `tap,id=net${i},${backend},vhost=off`);
    args.push('-device', `virtio-net-device,netdev=net${i},mac=${n.mac},host_mtu=${n.mtu}`);
  });
  (spec.readonlyDisks ?? []).forEach((d, i) => {
    if (!/^[A-Za-z0-9-]{1,20}$/.test(d.serial)) throw new VrunError(`disk serial "${d.serial}" is not 1-20 letters, digits or dashes`);
    // file.locking=off: many QEMUs share the file read-only, and the jail's read-only bind is all that matters.
    args.push('-blockdev', `driver=file,node-name=rodisk${i},filename=${qemuOptionValue(d.path)},read-only=on,locking=off`);
    args.push('-device', `virtio-blk-device,drive=rodisk${i},serial=${d.serial}`);
  });
  if (spec.freePageReporting) args.push('-device', 'virtio-balloon-device,free-page-reporting=on');
  (spec.ninePShares ?? []).forEach((s, i) => {
    args.push('-fsdev', `local,id=p9fs${i},path=${s.path},security_model=none,multidevs=remap${s.readonly ? ',readonly=on' : ''}`);
    args.push('-device', `virtio-9p-device,fsdev=p9fs${i},mount_tag=${s.tag}`);
  });
  args.push(...(spec.extraArgs ?? []));
  return args;
}
