import { accessSync, constants, existsSync } from 'node:fs';
import path from 'node:path';
import { MissingDependencyError, VrunError } from '../common/errors.js';

/** A host program or file the build needs, and the Debian package that provides it. */
export interface HostTool {
  what: string;
  /** An absolute path, or a program name looked up on PATH. */
  path: string;
  debianPackage: string;
}

export function findOnPath(name: string): string | undefined {
  if (name.includes('/')) return existsSync(name) ? name : undefined;
  for (const dir of (process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = path.join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Throws a MissingDependencyError naming the first absent tool's Debian package. */
export function requireTools(tools: HostTool[]): Record<string, string> {
  const found: Record<string, string> = {};
  for (const t of tools) {
    const p = findOnPath(t.path);
    if (!p) throw new MissingDependencyError(t.what, t.debianPackage);
    found[t.what] = p;
  }
  return found;
}

export function requireRoot(action: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new VrunError(`${action} needs root (it builds device nodes and files owned by root); run it as root`);
  }
}

/** The tarball Debian's kernel source package (linux-source-6.1, linux-source-6.12, ...) installs. */
export function kernelSourceTool(source: string): HostTool {
  return { what: `Debian ${source} tarball`, path: `/usr/src/${source}.tar.xz`, debianPackage: source };
}

export const KERNEL_BUILD_TOOLS: HostTool[] = [
  { what: 'make', path: 'make', debianPackage: 'make' },
  { what: 'gcc', path: 'gcc', debianPackage: 'gcc' },
  { what: 'bc', path: 'bc', debianPackage: 'bc' },
  { what: 'bison', path: 'bison', debianPackage: 'bison' },
  { what: 'flex', path: 'flex', debianPackage: 'flex' },
  { what: 'xz', path: 'xz', debianPackage: 'xz-utils' },
  { what: 'patch', path: 'patch', debianPackage: 'patch' },
  { what: 'perl', path: 'perl', debianPackage: 'perl' },
  { what: 'libelf headers', path: '/usr/include/libelf.h', debianPackage: 'libelf-dev' },
  { what: 'OpenSSL headers', path: '/usr/include/openssl/ssl.h', debianPackage: 'libssl-dev' },
];

export const INITRD_TOOLS: HostTool[] = [
  { what: 'busybox (static)', path: '/bin/busybox', debianPackage: 'busybox-static' },
  { what: 'crun', path: 'crun', debianPackage: 'crun' },
  { what: 'cpio', path: 'cpio', debianPackage: 'cpio' },
  { what: 'ldd', path: 'ldd', debianPackage: 'libc-bin' },
  { what: 'strip', path: 'strip', debianPackage: 'binutils' },
];
