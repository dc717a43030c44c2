import type { Command } from './command.js';

/**
 * Every command the `vrun` binary knows, with what `vrun --help` and command lookup need. A command's module
 * (and what it imports: the image store, the sandbox client, pino...) is loaded only when that command runs,
 * so `vrun --help` or `vrun images` does not pay for loading `vrun run`. Add new commands here;
 * test/cli/registry.test.ts checks that these names and summaries match the modules.
 */
export interface CommandEntry {
  name: string;
  aliases?: string[];
  summary: string;
  load(): Promise<Command>;
}

export const commands: CommandEntry[] = [
  { name: 'run', summary: 'Run a command in a new container, inside its own VM', load: async () => (await import('./commands/run.js')).runCommand },
  { name: 'exec', summary: 'Run a command in a running container', load: async () => (await import('./commands/exec.js')).execCommand },
  { name: 'ps', summary: 'List containers', load: async () => (await import('./commands/ps.js')).psCommand },
  { name: 'logs', summary: 'Print the output of a container', load: async () => (await import('./commands/logs.js')).logsCommand },
  { name: 'stop', summary: 'Stop running containers (SIGTERM, then SIGKILL)', load: async () => (await import('./commands/stop.js')).stopCommand },
  { name: 'kill', summary: 'Send a signal to running containers', load: async () => (await import('./commands/kill.js')).killCommand },
  { name: 'rm', summary: 'Remove containers (their VM, processes, mounts and state)', load: async () => (await import('./commands/rm.js')).rmCommand },
  { name: 'inspect', summary: 'Show details of containers or images as JSON', load: async () => (await import('./commands/inspect.js')).inspectCommand },
  { name: 'stats', summary: "Show resource usage of running containers (from the guest's cgroups)", load: async () => (await import('./commands/stats.js')).statsCommand },
  { name: 'network ls', aliases: ['network list'], summary: 'List the networks --network accepts', load: async () => (await import('./commands/network.js')).networkLsCommand },
  { name: 'version', summary: 'Show the vrun version', load: async () => (await import('./commands/version.js')).versionCommand },
  { name: 'pull', aliases: ['image pull'], summary: 'Pull an image from a registry', load: async () => (await import('./commands/pull.js')).pullCommand },
  {
    name: 'import',
    aliases: ['image import', 'load', 'image load'],
    summary: 'Import an image from a docker-archive tar, an OCI archive, or an OCI layout directory',
    load: async () => (await import('./commands/import.js')).importCommand,
  },
  { name: 'images', aliases: ['image ls', 'image list'], summary: 'List images in the local store', load: async () => (await import('./commands/images.js')).imagesCommand },
  { name: 'image inspect', summary: 'Show an image as JSON (id, names, config, layers)', load: async () => (await import('./commands/image-inspect.js')).imageInspectCommand },
  { name: 'rmi', aliases: ['image rm', 'image remove'], summary: 'Remove images', load: async () => (await import('./commands/image-rm.js')).imageRmCommand },
  {
    name: 'image prune',
    summary: 'Remove untagged images (all unused ones with -a) and unreferenced data',
    load: async () => (await import('./commands/image-prune.js')).imagePruneCommand,
  },
  {
    name: 'image ensure-builtin',
    summary: 'Create the built-in busybox image from the host busybox-static (works offline)',
    load: async () => (await import('./commands/image-ensure-builtin.js')).imageEnsureBuiltinCommand,
  },
];
