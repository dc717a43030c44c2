import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from './paths.js';

/**
 * Loads the C++ addon built from native/. Each user (the VMM on the host, the agent in the guest)
 * declares the typed slice of it that it uses, so this loader stays independent of both.
 * In the guest the addon sits next to the bundled agent; VRUN_NATIVE_ADDON points at it.
 */
let cached: unknown;

export function nativeAddonPath(): string {
  if (process.env.VRUN_NATIVE_ADDON) return process.env.VRUN_NATIVE_ADDON;
  return path.join(projectRoot(), 'native', 'build', 'Release', 'vrun_native.node');
}

export function loadNative<T>(): T {
  if (cached === undefined) {
    const file = nativeAddonPath();
    if (!existsSync(file)) {
      throw new Error(`native addon not built: ${file} is missing (run "npm ci" or "npx node-gyp rebuild --directory native")`);
    }
    const require = createRequire(import.meta.url);
    cached = require(file);
  }
  return cached as T;
}
