import type { PortMapping } from '../network/ports.js';
import type { VmmChoice } from '../vmm/backend.js';

/**
 * Everything `vrun run` decided, handed from the CLI to the sandbox process (inside state.json). The CLI
 * has validated it; the sandbox process re-checks only what it trusts the file system for (paths exist).
 */
export interface VolumeSpec {
  hostPath: string;
  containerPath: string;
  readonly: boolean;
}

/**
 * The container's network, Docker's flags: `name` is a CNI network from vrun's config directory ('vrun' for
 * `--network bridge`), or 'none' for loopback only. Host ports are already resolved (a free one picked for
 * `-p CTRPORT`), so the sandbox and a later `vrun rm` use the same mappings.
 */
export interface NetworkSpec {
  name: string;
  ports: PortMapping[];
  /** `--dns`; empty: the host's nameservers, without the loopback ones the guest cannot reach. */
  dns: string[];
  dnsSearch: string[];
  dnsOptions: string[];
  /** `--add-host NAME:IP`, in order. */
  addHosts: { name: string; ip: string }[];
}

export interface RunConfig {
  image: string;
  args: string[];
  entrypoint?: string;
  env: string[];
  workdir?: string;
  user?: string;
  tty: boolean;
  interactive: boolean;
  detach: boolean;
  autoRemove: boolean;
  cpus?: number;
  memoryBytes?: number;
  pidsLimit?: number;
  readOnly: boolean;
  volumes: VolumeSpec[];
  vmm: VmmChoice;
  debug: boolean;
  /** `--hostname`; default: the short container id, as in Docker. */
  hostname?: string;
  /** Absent in state written before vrun had networking: such a sandbox has loopback only. */
  network?: NetworkSpec;
}
