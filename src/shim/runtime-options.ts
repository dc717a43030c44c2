import { readFile } from 'node:fs/promises';
import { errorMessage } from '../common/errors.js';
import { parseVmmChoice, type VmmChoice } from '../vmm/backend.js';
import { message, pb } from '../ttrpc/protobuf/schema.js';
import type { Any } from '../ttrpc/protobuf/well-known.js';
import { Code, TtrpcError } from '../ttrpc/status.js';

/**
 * The runtime options containerd passes on Create. For a runtime that is not runc, containerd (CRI's
 * `[...runtimes.vrun.options] ConfigPath = ...`, or `ctr run --runtime-config-path`) sends
 * runtimeoptions.v1.Options { type_url, config_path }; the file at config_path is vrun's shim config, JSON:
 * { "vmm": "auto|qemu|qemu-kvm|qemu-tcg|native", "memoryMiB": 512, "vcpus": 1 }.
 */
export const RuntimeOptions = message('runtimeoptions.v1.Options', { typeUrl: pb.string(1), configPath: pb.string(2) });

export interface PodVmConfig {
  vmm: VmmChoice;
  memoryMiB: number;
  vcpus: number;
}

export const DEFAULT_POD_VM: PodVmConfig = { vmm: 'auto', memoryMiB: 512, vcpus: 1 };
/** The largest VM, in MiB, the runtime options (and a pod's own limits, pod-sizing.ts) may ask for. */
export const MAX_POD_VM_MIB = 65536;

const KNOWN_KEYS = new Set(['vmm', 'memoryMiB', 'vcpus']);

function bad(msg: string): TtrpcError {
  return new TtrpcError(Code.INVALID_ARGUMENT, `vrun runtime options: ${msg}`);
}

function intIn(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(`"${name}" must be an integer in ${min}..${max}, got ${JSON.stringify(v)}`);
  return v;
}

export function parseShimConfig(text: string, where: string): PodVmConfig {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw bad(`${where} is not valid JSON: ${errorMessage(err)}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${where} must hold a JSON object`);
  const o = v as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !KNOWN_KEYS.has(k));
  if (unknown.length > 0) throw bad(`${where} has unknown option(s) ${unknown.map((k) => `"${k}"`).join(', ')} (known: vmm, memoryMiB, vcpus)`);
  let vmm = DEFAULT_POD_VM.vmm;
  if (o.vmm !== undefined) {
    if (typeof o.vmm !== 'string') throw bad(`"vmm" must be a string`);
    try {
      vmm = parseVmmChoice(o.vmm);
    } catch (err) {
      throw bad(errorMessage(err).replace('--vmm', '"vmm"'));
    }
  }
  return {
    vmm,
    memoryMiB: o.memoryMiB === undefined ? DEFAULT_POD_VM.memoryMiB : intIn('memoryMiB', o.memoryMiB, 128, MAX_POD_VM_MIB),
    vcpus: o.vcpus === undefined ? DEFAULT_POD_VM.vcpus : intIn('vcpus', o.vcpus, 1, 16),
  };
}

export async function podVmConfigFrom(options: Any | undefined): Promise<PodVmConfig> {
  if (!options || (options.typeUrl === '' && options.value.length === 0)) return { ...DEFAULT_POD_VM };
  const type = options.typeUrl.replace(/^type\.googleapis\.com\//, '');
  if (type !== RuntimeOptions.typeName) {
    throw bad(`unsupported options type "${options.typeUrl}": vrun takes ${RuntimeOptions.typeName} (ConfigPath naming a JSON file), not runc's options`);
  }
  let decoded;
  try {
    decoded = RuntimeOptions.decode(options.value);
  } catch (err) {
    throw bad(`malformed ${RuntimeOptions.typeName}: ${errorMessage(err)}`);
  }
  if (decoded.configPath === '') return { ...DEFAULT_POD_VM };
  let text: string;
  try {
    text = await readFile(decoded.configPath, 'utf8');
  } catch (err) {
    throw bad(`cannot read the config file ${decoded.configPath}: ${errorMessage(err)}`);
  }
  return parseShimConfig(text, decoded.configPath);
}
