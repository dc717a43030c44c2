// Bundles the guest agent into one file (dist/agent/agent.mjs) for the guest initrd: the guest has node
// but no node_modules. Its .proto is copied beside it (dist/agent/agent.proto, which the initrd puts at
// /opt/vrun/agent.proto, where src/agent/proto.ts looks first); the native addon is shipped by the initrd.
import { build } from 'esbuild';
import { mkdirSync, copyFileSync, existsSync } from 'node:fs';
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
const agentProto = path.join(root, 'proto', 'vrun', 'agent', 'v1', 'agent.proto');
if (!existsSync(agentProto)) throw new Error(`${agentProto} is missing`);
copyFileSync(agentProto, path.join(out, 'agent.proto'));
