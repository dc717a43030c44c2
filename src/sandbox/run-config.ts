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
}
