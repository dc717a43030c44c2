import { VrunError, errorMessage } from '../common/errors.js';
import { exitCodeFor } from '../cli/exit-codes.js';
import { ensureGuestImage, ensureLabImage, type ImageManifest } from './image.js';

/** `npm run guest-image [-- --lab] [-- --force]`: build (or verify the cache of) the guest image. */
function describe(m: ImageManifest): string {
  const mib = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;
  return [
    `${m.kind}: kernel ${m.kernelRelease} (config ${m.configHash}, built in ${m.kernelBuildSeconds}s)`,
    `  vmlinux ${mib(m.sizes.vmlinux)}  bzImage ${mib(m.sizes.bzImage)}  initrd ${mib(m.sizes.initrd)}`,
    `  kernel ${m.kernel}`,
    `  initrd ${m.initrd}`,
    ...(m.userland ? [`  split userland: boot initrd ${mib(m.sizes.bootInitrd ?? 0)} ${m.userland.initrd}, image ${mib(m.sizes.userlandImage ?? 0)} ${m.userland.image}`] : []),
    `  this run: ${m.totalSeconds}s`,
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const force = argv.includes('--force');
  const unknown = argv.filter((a) => !['--force', '--lab', '--all'].includes(a));
  if (unknown.length > 0) throw new VrunError(`unknown argument(s): ${unknown.join(' ')} (expected --lab, --all, --force)`);
  if (!argv.includes('--lab') || argv.includes('--all')) process.stdout.write(describe(await ensureGuestImage({ force })) + '\n');
  if (argv.includes('--lab') || argv.includes('--all')) process.stdout.write(describe(await ensureLabImage({ force })) + '\n');
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    process.stderr.write(`guest-image: ${errorMessage(err)}\n`);
    if (process.env.VRUN_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    process.exitCode = err instanceof VrunError ? exitCodeFor(err) : 1;
  },
);
