import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * docs/architecture.md promises a reader finds each part in one guess: every file or folder it names in
 * backticks must exist, so a move that forgets the page fails here.
 */
const ROOT = path.resolve(import.meta.dirname, '..', '..');

function namedPaths(doc: string): string[] {
  const names = [...doc.matchAll(/`([^`\s]+)`/g)].map((m) => m[1] ?? '');
  return [...new Set(names.filter((n) => /^(src|native|proto|guest-image|docs|bench|test|scripts)\//.test(n) || /^[a-z.-]+\.(js|json|md)$/.test(n)))];
}

describe('docs/architecture.md', () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'architecture.md'), 'utf8');

  it('names only files and folders that exist', () => {
    const names = namedPaths(doc);
    expect(names.length).toBeGreaterThan(40);
    expect(names.filter((n) => !fs.existsSync(path.join(ROOT, n)))).toEqual([]);
  });

  it('lists every RPC of the agent protocol', () => {
    const proto = fs.readFileSync(path.join(ROOT, 'proto', 'vrun', 'agent', 'v1', 'agent.proto'), 'utf8');
    const rpcs = [...proto.matchAll(/^\s*rpc (\w+)/gm)].map((m) => m[1] ?? '');
    expect(rpcs.length).toBeGreaterThan(10);
    expect(rpcs.filter((r) => !doc.includes(r))).toEqual([]);
  });
});
