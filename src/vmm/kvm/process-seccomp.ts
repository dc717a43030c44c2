import { VrunError, errorMessage } from '../../common/errors.js';
import { loadNative } from '../../common/native.js';

/**
 * The native VMM process's seccomp floor (native/src/vmm_seccomp.cc): on every thread, including the ones Node
 * already runs, it refuses starting programs and processes (execve, fork: the process is killed), mounts and
 * namespaces, kernel modules, bpf, io_uring, userfaultfd, perf and keyrings. It cannot be lifted once set: the
 * VMM process applies it after it has loaded everything it needs and before the guest runs a single
 * instruction; a process that cannot apply it must not run the guest.
 */
export function confineVmmProcess(): void {
  const mod = loadNative<{ seccompConfineVmmProcess?: () => void }>();
  if (typeof mod.seccompConfineVmmProcess !== 'function') {
    throw new VrunError('the native addon is older than this vrun (it lacks seccompConfineVmmProcess): rebuild it with "npx node-gyp rebuild --directory native"');
  }
  try {
    mod.seccompConfineVmmProcess();
  } catch (err) {
    throw new VrunError(`cannot confine the native VMM process with seccomp: ${errorMessage(err)}`);
  }
}
