/**
 * virtio-net's feature bits and the 12-byte virtio_net_hdr_v1 every frame carries (virtio 1.2, 5.1). The tap
 * uses the same header (TUNSETVNETHDRSZ 12, little-endian), so it passes through both ways unchanged; what is
 * checked here is every field the host or the guest would act on, against what was negotiated.
 */

export const VIRTIO_NET_F_CSUM = 0n;
export const VIRTIO_NET_F_GUEST_CSUM = 1n;
export const VIRTIO_NET_F_MTU = 3n;
export const VIRTIO_NET_F_MAC = 5n;
export const VIRTIO_NET_F_GUEST_TSO4 = 7n;
export const VIRTIO_NET_F_GUEST_TSO6 = 8n;
export const VIRTIO_NET_F_HOST_TSO4 = 11n;
export const VIRTIO_NET_F_HOST_TSO6 = 12n;
export const VIRTIO_NET_F_MRG_RXBUF = 15n;
export const VIRTIO_NET_F_STATUS = 16n;

export const VNET_HDR_LEN = 12;
export const HDR_F_NEEDS_CSUM = 1;
export const HDR_F_DATA_VALID = 2;
export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
export const GSO_TCPV6 = 4;
const GSO_ECN = 0x80;
const ETH_HLEN = 14;
/** The least a mergeable receive buffer must hold: the header and an Ethernet header start a frame. */
export const MIN_RX_BUFFER = VNET_HDR_LEN + ETH_HLEN;
/** An Ethernet header with one VLAN tag: what a frame of `mtu` bytes of payload may add. */
const L2_OVERHEAD = ETH_HLEN + 4;
/** The largest GSO frame either side hands over: a 64 KiB IP packet and its link header. */
export const MAX_GSO_FRAME = 65_536 + L2_OVERHEAD;

const has = (features: bigint, f: bigint) => (features & (1n << f)) !== 0n;

export interface HeaderRules {
  /** Negotiated features. */
  features: bigint;
  /** The device's MTU: a frame that is not GSO carries at most this much above its link header. */
  mtu: number;
}

/**
 * Why a frame the guest sent must not reach the tap, or undefined. `buf` holds the header and then the frame,
 * `len` bytes in all; it is the device's own copy, so nothing checked here can change before the write.
 */
export function txHeaderProblem(buf: Buffer, len: number, rules: HeaderRules): string | undefined {
  return headerProblem(buf, len, rules, {
    csum: VIRTIO_NET_F_CSUM,
    tso4: VIRTIO_NET_F_HOST_TSO4,
    tso6: VIRTIO_NET_F_HOST_TSO6,
    // DATA_VALID only ever goes to the guest; RSC_INFO needs a feature not offered.
    flags: HDR_F_NEEDS_CSUM,
  });
}

/**
 * Why a frame read from the tap must not reach the guest, or undefined. The tap only hands over what its
 * offloads allow, and those follow the negotiated features, but frames it queued before the guest negotiated
 * (or renegotiated after a reset) still carry the old ones.
 */
export function rxHeaderProblem(buf: Buffer, len: number, rules: HeaderRules): string | undefined {
  return headerProblem(buf, len, rules, {
    csum: VIRTIO_NET_F_GUEST_CSUM,
    tso4: VIRTIO_NET_F_GUEST_TSO4,
    tso6: VIRTIO_NET_F_GUEST_TSO6,
    flags: HDR_F_NEEDS_CSUM | HDR_F_DATA_VALID,
  });
}

/**
 * Readies a frame read from the tap for the guest: num_buffers is the chains it fills (always 1 without
 * MRG_RXBUF; the tap leaves those two bytes alone), and DATA_VALID goes only to a guest that negotiated
 * GUEST_CSUM.
 */
export function finishRxHeader(buf: Buffer, features: bigint, numBuffers = 1): void {
  buf.writeUInt16LE(numBuffers, 10);
  if (!has(features, VIRTIO_NET_F_GUEST_CSUM)) buf[0] = buf[0]! & ~HDR_F_DATA_VALID;
}

interface Direction {
  csum: bigint;
  tso4: bigint;
  tso6: bigint;
  flags: number;
}

function headerProblem(buf: Buffer, len: number, { features, mtu }: HeaderRules, dir: Direction): string | undefined {
  if (len < VNET_HDR_LEN + ETH_HLEN) return `${len} bytes are less than a header and an Ethernet header`;
  const frame = len - VNET_HDR_LEN;
  const flags = buf[0]!;
  const gsoType = buf[1]!;
  const hdrLen = buf.readUInt16LE(2);
  const gsoSize = buf.readUInt16LE(4);
  const csumStart = buf.readUInt16LE(6);
  const csumOffset = buf.readUInt16LE(8);
  if (flags & ~dir.flags) return `header flags 0x${flags.toString(16)} are not allowed this way`;
  if (flags & HDR_F_NEEDS_CSUM) {
    if (!has(features, dir.csum)) return 'checksum offload was not negotiated';
    if (csumStart + csumOffset + 2 > frame) return `checksum at ${csumStart}+${csumOffset} is past the ${frame}-byte frame`;
  }
  if (gsoType === GSO_NONE) {
    return frame > mtu + L2_OVERHEAD ? `${frame}-byte frame is larger than the MTU ${mtu} allows` : undefined;
  }
  if (gsoType & GSO_ECN) return 'GSO with ECN was not negotiated';
  const tso = gsoType === GSO_TCPV4 ? dir.tso4 : gsoType === GSO_TCPV6 ? dir.tso6 : undefined;
  if (tso === undefined || !has(features, tso)) return `GSO type ${gsoType} was not negotiated`;
  if (!(flags & HDR_F_NEEDS_CSUM)) return 'a GSO frame without a partial checksum';
  if (gsoSize === 0 || hdrLen > frame) return `GSO size ${gsoSize}, header length ${hdrLen} do not fit the ${frame}-byte frame`;
  if (frame > MAX_GSO_FRAME) return `${frame}-byte GSO frame is larger than 64 KiB`;
  return undefined;
}
