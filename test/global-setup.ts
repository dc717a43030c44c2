import { execFileSync } from 'node:child_process';
import path from 'node:path';

/**
 * Tests that start the real CLI, agent or shim run the compiled output, so build once before any test.
 * tsc is incremental enough here (a few seconds) that a fresh build every run keeps tests honest.
 */
export default function setup(): void {
  const root = path.resolve(import.meta.dirname, '..');
  if (process.env.VRUN_TEST_SKIP_BUILD === '1') return;
  execFileSync('npm', ['run', '--silent', 'build'], { cwd: root, stdio: 'inherit' });
}
