/** Entry point of containerd-shim-vrun-v2. The shim v2 protocol is implemented by the shim issue. */
export async function main(_argv: string[]): Promise<number> {
  process.stderr.write('containerd-shim-vrun-v2: not implemented yet\n');
  return 1;
}
