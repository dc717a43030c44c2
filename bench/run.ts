import { readdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * `npm run bench [-- NAME...]`: runs every benchmark module in bench/ (compiled to dist/bench), one after
 * another so they do not disturb each other. Each module exports `run()` and prints its own ratios
 * against a peer measured in the same run.
 */
interface BenchModule {
  run(): Promise<void>;
}

async function main(filter: string[]): Promise<number> {
  // A `vrun run` without --network joins the default bridge in the namespace vrun runs in: here the host's.
  // Benchmarks keep every bridge and rule in a namespace of their own, so the ones that do not measure the
  // network run their pods with loopback only (the network benches make their namespace and say --network).
  process.env.VRUN_NETWORK ??= 'none';
  const dir = import.meta.dirname;
  const names = readdirSync(dir)
    .filter((f) => f.endsWith('.js') && f !== 'run.js')
    .map((f) => f.replace(/\.js$/, ''))
    .filter((n) => filter.length === 0 || filter.includes(n))
    .sort();
  if (names.length === 0) {
    process.stderr.write(`no benchmark matches ${filter.join(', ')}\n`);
    return 1;
  }
  let failed = 0;
  for (const name of names) {
    process.stdout.write(`\n=== bench: ${name}\n`);
    const started = Date.now();
    try {
      const mod = (await import(pathToFileURL(path.join(dir, `${name}.js`)).href)) as BenchModule;
      await mod.run();
    } catch (err) {
      failed++;
      process.stdout.write(`bench ${name} failed: ${(err as Error).message}\n`);
    }
    process.stdout.write(`=== ${name} took ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
  }
  return failed === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => (process.exitCode = code));
