import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadProtoRoot, writeParsedProto } from '../../src/agent/protocol/proto.js';

const source = path.resolve(import.meta.dirname, '../../proto/vrun/agent/v1/agent.proto');

/** The agent's .proto and the parsed copy the build writes beside it (agent.proto.json). */
describe('agent .proto loading', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vrun-proto-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const methods = (file: string) => loadProtoRoot(file).lookupService('vrun.agent.v1.Agent').methodsArray.map((m) => `${m.name}(${m.requestType})`);

  it('reads the parsed copy as the same service and messages as the text', () => {
    const file = path.join(dir, 'agent.proto');
    fs.copyFileSync(source, file);
    const fromText = loadProtoRoot(file).toJSON();
    writeParsedProto(file);
    // The copy is what is read now: a copy with another root but the right digest shows it.
    const copy = JSON.parse(fs.readFileSync(`${file}.json`, 'utf8')) as { protoSha256: string; root: unknown };
    expect(loadProtoRoot(file).toJSON()).toEqual(fromText);
    fs.writeFileSync(`${file}.json`, JSON.stringify({ ...copy, root: { nested: { only: { nested: { Marker: { fields: {} } } } } } }));
    expect(loadProtoRoot(file).lookupType('only.Marker').name).toBe('Marker');
    expect(methods(source)).toContain('CreateContainer(CreateContainerRequest)');
  });

  it('parses the text when the copy is stale, damaged or missing', () => {
    const file = path.join(dir, 'edited.proto');
    fs.copyFileSync(source, file);
    writeParsedProto(file);
    // The .proto gains a method after the copy was made: the copy names the old text's digest and is not used.
    fs.writeFileSync(file, fs.readFileSync(source, 'utf8').replace('service Agent {', 'service Agent {\n  rpc Added(HealthRequest) returns (HealthResponse);'));
    expect(methods(file)).toContain('Added(HealthRequest)');
    fs.writeFileSync(`${file}.json`, '{ not json');
    expect(methods(file)).toContain('Added(HealthRequest)');
    fs.rmSync(`${file}.json`);
    expect(methods(file)).toContain('Added(HealthRequest)');
  });
});
