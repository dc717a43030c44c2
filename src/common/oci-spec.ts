/**
 * The OCI runtime spec (config.json) the host hands the guest agent for a container, as the sandbox builds it
 * from an image (src/sandbox/oci-spec.ts) or the shim takes it from containerd's bundle (src/shim/guest-spec.ts):
 * the parts vrun reads or sets are typed, the rest of the OCI shape passes through. The agent sets root.path to
 * the container's rootfs, and checks everything again, as untrusted JSON (src/agent/guest/bundle-spec.ts).
 */

/** An OCI process object: a container's init process, or one started by exec. */
export interface OciProcess {
  args: string[];
  env?: string[];
  cwd?: string;
  user?: { uid: number; gid: number; additionalGids?: number[]; umask?: number };
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  noNewPrivileges?: boolean;
  capabilities?: Record<string, string[]>;
  rlimits?: { type: string; hard: number; soft: number }[];
  [key: string]: unknown;
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  mounts?: { destination: string; type?: string; source?: string; options?: string[] }[];
  linux?: Record<string, unknown>;
  [key: string]: unknown;
}
