// Bundles the guest agent into one file (dist/agent/agent.js) for the guest initrd: the guest has node
// but no node_modules. The .proto file and the native addon are shipped beside it.
import { build } from 'esbuild';
import { mkdirSync, copyFileSync, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const out = path.join(root, 'dist', 'agent');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [path.join(root, 'src', 'agent', 'main.ts')],
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'esm',
  outfile: path.join(out, 'agent.mjs'),
  banner: { js: "import { createRequire as __vrunCreateRequire } from 'node:module'; const require = __vrunCreateRequire(import.meta.url);" },
  logLevel: 'warning',
  legalComments: 'none',
});
const protoDir = path.join(root, 'proto');
if (existsSync(protoDir)) {
  for (const f of readdirSync(protoDir)) if (f.endsWith('.proto')) copyFileSync(path.join(protoDir, f), path.join(out, f));
}
