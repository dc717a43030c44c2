/**
 * The environment for vrun's own long-lived Node processes (the sandbox process, the shim's serving
 * process). Neither opens a TLS connection, yet Node reads and parses every certificate named by
 * NODE_EXTRA_CA_CERTS before any JavaScript runs: with Debian's 140-certificate bundle that is about
 * 40-50 ms of each start on these machines, on the path of every `vrun run` and every pod. The CLI gets the
 * file under another name from `bin/vrun` and reads it only when `vrun pull` talks TLS.
 */
const TLS_ONLY_VARIABLES = ['NODE_EXTRA_CA_CERTS'] as const;

export function nodeChildEnv(base: NodeJS.ProcessEnv = process.env, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, ...extra };
  for (const name of TLS_ONLY_VARIABLES) delete env[name];
  return env;
}
