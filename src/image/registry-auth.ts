import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VrunError } from '../common/errors.js';
import { DEFAULT_DOMAIN } from './reference.js';

/**
 * Registry credentials from the files people already have: a docker-style config.json
 * ($DOCKER_CONFIG/config.json or ~/.docker/config.json) and the containers auth.json
 * ($REGISTRY_AUTH_FILE or $XDG_RUNTIME_DIR/containers/auth.json). Credential helpers are not run.
 */
export interface Credentials {
  username: string;
  password: string;
}

function authFiles(): string[] {
  const files: string[] = [];
  if (process.env.REGISTRY_AUTH_FILE) files.push(process.env.REGISTRY_AUTH_FILE);
  if (process.env.XDG_RUNTIME_DIR) files.push(path.join(process.env.XDG_RUNTIME_DIR, 'containers', 'auth.json'));
  files.push(path.join(process.env.DOCKER_CONFIG ?? path.join(os.homedir(), '.docker'), 'config.json'));
  return files;
}

function keysFor(domain: string): string[] {
  if (domain === DEFAULT_DOMAIN) return ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];
  return [domain, `https://${domain}`, `http://${domain}`, `https://${domain}/v1/`, `https://${domain}/v2/`];
}

export function findCredentials(domain: string): Credentials | undefined {
  for (const file of authFiles()) {
    let doc: { auths?: Record<string, { auth?: string; username?: string; password?: string }> };
    try {
      doc = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof doc;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new VrunError(`cannot read registry credentials from ${file}: it is not valid JSON`);
    }
    const auths = doc.auths ?? {};
    for (const key of keysFor(domain)) {
      const a = auths[key];
      if (!a) continue;
      if (typeof a.username === 'string' && typeof a.password === 'string') return { username: a.username, password: a.password };
      if (typeof a.auth === 'string') {
        const decoded = Buffer.from(a.auth, 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
      }
    }
  }
  return undefined;
}

/** Parses `Bearer realm="...",service="...",scope="..."` (or `Basic realm=...`). */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return { scheme: '', params: {} };
  const params: Record<string, string> = {};
  const re = /(\w+)=(?:"([^"]*)"|([^,\s]*))/g;
  let x: RegExpExecArray | null;
  while ((x = re.exec(m[2] ?? '')) !== null) params[(x[1] as string).toLowerCase()] = x[2] ?? x[3] ?? '';
  return { scheme: (m[1] as string).toLowerCase(), params };
}
