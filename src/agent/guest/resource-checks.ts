/**
 * Checks OCI LinuxResources (linux.resources of a spec, or an UpdateResources request) before crun sees
 * them: crun 1.8 ignores a field of the wrong type (`"pids": {"limit": "many"}` leaves the limit as it
 * was and reports success), so a limit the host asked for could silently not apply. Every field must be
 * one the OCI runtime spec defines, with its type.
 */
import { invalid } from '../protocol/rpc-error.js';

type Kind = 'int' | 'uint' | 'bool' | 'string';
type Shape = { [field: string]: Kind | { array: Shape } };

const DEVICE_RATE: Shape = { major: 'int', minor: 'int', rate: 'uint' };

const SECTIONS: Record<string, Shape> = {
  memory: { limit: 'int', reservation: 'int', swap: 'int', kernel: 'int', kernelTCP: 'int', swappiness: 'uint', disableOOMKiller: 'bool', useHierarchy: 'bool', checkBeforeUpdate: 'bool' },
  cpu: { shares: 'uint', quota: 'int', burst: 'uint', period: 'uint', realtimeRuntime: 'int', realtimePeriod: 'uint', cpus: 'string', mems: 'string', idle: 'int' },
  pids: { limit: 'int' },
  blockIO: {
    weight: 'uint',
    leafWeight: 'uint',
    weightDevice: { array: { major: 'int', minor: 'int', weight: 'uint', leafWeight: 'uint' } },
    throttleReadBpsDevice: { array: DEVICE_RATE },
    throttleWriteBpsDevice: { array: DEVICE_RATE },
    throttleReadIOPSDevice: { array: DEVICE_RATE },
    throttleWriteIOPSDevice: { array: DEVICE_RATE },
  },
  network: { classID: 'uint', priorities: { array: { name: 'string', priority: 'uint' } } },
};

const ARRAYS: Record<string, Shape> = {
  devices: { allow: 'bool', type: 'string', major: 'int', minor: 'int', access: 'string' },
  hugepageLimits: { pageSize: 'string', limit: 'uint' },
};

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function checkValue(where: string, kind: Kind, v: unknown): void {
  const ok =
    kind === 'bool' ? typeof v === 'boolean'
    : kind === 'string' ? typeof v === 'string' && v.length <= 4096
    : typeof v === 'number' && Number.isSafeInteger(v) && (kind === 'int' || v >= 0);
  if (!ok) throw invalid(`${where} must be ${kind === 'int' ? 'an integer' : kind === 'uint' ? 'a non-negative integer' : `a ${kind === 'bool' ? 'boolean' : 'string'}`}, not ${JSON.stringify(v)?.slice(0, 40)}`);
}

function checkShape(where: string, shape: Shape, v: unknown): void {
  if (!isObject(v)) throw invalid(`${where} must be an object`);
  for (const [field, value] of Object.entries(v)) {
    const kind = shape[field];
    if (kind === undefined) throw invalid(`${where}.${field} is not an OCI resource field`);
    if (typeof kind === 'string') checkValue(`${where}.${field}`, kind, value);
    else checkArray(`${where}.${field}`, kind.array, value);
  }
}

function checkArray(where: string, shape: Shape, v: unknown): void {
  if (!Array.isArray(v) || v.length > 1024) throw invalid(`${where} must be an array (at most 1024 entries)`);
  v.forEach((item, i) => checkShape(`${where}[${i}]`, shape, item));
}

/** Throws INVALID_ARGUMENT naming the first field that is unknown or of the wrong type. */
export function checkResources(where: string, v: unknown): void {
  if (!isObject(v)) throw invalid(`${where} must be an object`);
  for (const [key, value] of Object.entries(v)) {
    const section = SECTIONS[key];
    const array = ARRAYS[key];
    if (section) checkShape(`${where}.${key}`, section, value);
    else if (array) checkArray(`${where}.${key}`, array, value);
    else if (key === 'unified' || key === 'rdma') {
      if (!isObject(value)) throw invalid(`${where}.${key} must be an object`);
      if (key === 'unified') for (const [k, s] of Object.entries(value)) checkValue(`${where}.unified[${JSON.stringify(k.slice(0, 40))}]`, 'string', s);
    } else throw invalid(`${where}.${key} is not an OCI resource field`);
  }
}
