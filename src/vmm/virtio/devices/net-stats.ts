/** What a virtio-net device did, for the sandbox's stats and for tests. Drops are counted, never logged per frame. */
export interface NetStats {
  /** Frames the guest sent that reached the tap, and their bytes (without the header). */
  txFrames: number;
  txBytes: number;
  /** Transmit chains larger than a header and a 64 KiB frame: dropped without being read. */
  txOversized: number;
  /** Frames whose header broke the negotiated rules, or too short for Ethernet: dropped. */
  txInvalid: number;
  /** Frames the tap refused (down, gone, full): dropped. */
  txErrors: number;
  /** Frames from the tap delivered to the guest, and their bytes (without the header). */
  rxFrames: number;
  rxBytes: number;
  /** Frames dropped because the guest's chain could not hold them (the chain goes back empty). */
  rxTooSmall: number;
  /** Frames from the tap whose header the guest did not negotiate, or too short or too large: dropped. */
  rxInvalid: number;
  /** Reads from the tap that failed other than "nothing waiting". */
  rxErrors: number;
  /**
   * Passes over each queue (a notification, a tap readiness, or a pass continued after its budget) and used-ring
   * interrupts sent: frames per pass is how well the device batches, which is what costs under nesting.
   */
  txPasses: number;
  rxPasses: number;
  interrupts: number;
}

export function emptyNetStats(): NetStats {
  return { txFrames: 0, txBytes: 0, txOversized: 0, txInvalid: 0, txErrors: 0, rxFrames: 0, rxBytes: 0, rxTooSmall: 0, rxInvalid: 0, rxErrors: 0, txPasses: 0, rxPasses: 0, interrupts: 0 };
}
