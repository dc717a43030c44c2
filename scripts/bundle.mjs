// The bundles the build makes with esbuild, beside tsc's per-file output in dist/src, each one CommonJS file,
// whitespace-minified with names kept for --debug stacks, loaded by bin/ with a V8 code cache (see
// bin/load-bundle.js for why):
// - dist/cli/vrun.cjs, the `vrun` CLI, and dist/sandbox/daemon.cjs, the sandbox process;
// - dist/agent/agent.cjs, the guest agent for the guest initrd (the guest has node but no node_modules), loaded
//   by bin/vrun-agent.js with a code cache the initrd build makes. Its .proto is copied beside it
//   (dist/agent/agent.proto, which the initrd puts at /opt/vrun/agent.proto, where src/agent/protocol/proto.ts looks
//   first), with its parsed form (agent.proto.json); the native addon is shipped by the initrd.
// import.meta.url becomes the bundle's own URL, which is why src/common/paths.ts finds the repository by walking
// up, not by a fixed depth.
import { build } from 'esbuild';
import { mkdirSync, copyFileSync, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const common = { absWorkingDir: root, bundle: true, platform: 'node', target: 'node20', logLevel: 'warning', legalComments: 'none' };

const agentOut = path.join(root, 'dist', 'agent');
mkdirSync(agentOut, { recursive: true });
rmSync(path.join(agentOut, 'agent.mjs'), { force: true }); // the ES-module bundle of earlier builds
const agentProto = path.join(root, 'proto', 'vrun', 'agent', 'v1', 'agent.proto');
if (!existsSync(agentProto)) throw new Error(`${agentProto} is missing`);
copyFileSync(agentProto, path.join(agentOut, 'agent.proto'));
// Its parsed form beside it (agent.proto.json), which saves the agent parsing the text at every start.
const { writeParsedProto } = await import(path.join(root, 'dist', 'src', 'agent', 'protocol', 'proto.js'));
writeParsedProto(path.join(agentOut, 'agent.proto'));

// The CommonJS bundles bin/load-bundle.js loads with a code cache.
async function bundleCjs(entry, outfile) {
  const outDir = path.dirname(outfile);
  // Code caches of earlier builds (named by the bundle's size and mtime).
  for (const f of existsSync(outDir) ? readdirSync(outDir) : []) if (f.endsWith('.v8-cache')) rmSync(path.join(outDir, f), { force: true });
  const { metafile } = await build({
    ...common,
    entryPoints: [path.join(root, entry)],
    format: 'cjs',
    outfile,
    define: { 'import.meta.url': '__vrunModuleUrl' },
    banner: { js: "const __vrunModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
    // import() of Node's built-ins becomes require(): a script compiled through node:vm has no ES-module loader.
    supported: { 'dynamic-import': false },
    minifyWhitespace: true,
    minifySyntax: true,
    metafile: true,
  });
  // A module that runs its own main when import.meta.url equals argv[1] would run it inside the bundle, where
  // both name the bundle.
  const selfRunning = Object.keys(metafile.inputs).filter(
    (f) => f.startsWith('src/') && /import\.meta\.url === pathToFileURL\(process\.argv\[1\]/.test(readFileSync(path.join(root, f), 'utf8')),
  );
  if (selfRunning.length > 0) throw new Error(`${outfile} must not include ${selfRunning.join(', ')}`);
}

await bundleCjs('src/cli/main.ts', path.join(root, 'dist', 'cli', 'vrun.cjs'));
await bundleCjs('src/agent/guest/main.ts', path.join(agentOut, 'agent.cjs'));
await bundleCjs('src/sandbox/daemon.ts', path.join(root, 'dist', 'sandbox', 'daemon.cjs'));
await bundleCjs('src/vmm/native-process/vmm-main.ts', path.join(root, 'dist', 'vmm', 'vmm.cjs'));
