/**
 * True when a KVM lab run ended because L1's own kernel failed (an oops or panic in stock Linux KVM under L0's
 * TCG): the one lab failure outside the project that lab tests may retry, once, saying so. A panic because
 * L1's init exited is our lab init's fault, never retried.
 */
export function isL1KernelFailure(message: string): boolean {
  if (/Attempted to kill init/.test(message)) return false;
  return /---\[ end trace |Kernel panic|BUG: /.test(message);
}
