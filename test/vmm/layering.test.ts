import path from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

/**
 * The import layering eslint.config.js enforces (no-restricted-imports), tried on small sources placed where the
 * rule applies: `npx eslint .` only shows that today's tree passes, not that the rule would catch anything.
 */
const eslint = new ESLint({ cwd: path.resolve(import.meta.dirname, '../..') });

async function restricted(filePath: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('import layering', () => {
  it('production code may not import the KVM lab, tests or benchmarks', async () => {
    expect(await restricted('src/sandbox/probe.ts', "import { runInLab } from '../kvm-lab/lab.js';\nexport const f = runInLab;\n")).toEqual([
      expect.stringMatching(/KVM lab, tests or benchmarks/),
    ]);
    expect(await restricted('src/vmm/qemu/probe.ts', "export { bootGuestImage } from '../../../test/helpers/guest-runner.js';\n")).toHaveLength(1);
    expect(await restricted('src/image/probe.ts', "import type { X } from '../../bench/vmm/exit-bench.js';\nexport type Y = X;\n")).toHaveLength(1);
  });

  it('the KVM lab, tests and benchmarks may import production code', async () => {
    expect(await restricted('src/kvm-lab/probe.ts', "import { hasHardwareVirtualization } from '../vmm/host-capabilities.js';\nexport const f = hasHardwareVirtualization;\n")).toEqual([]);
    expect(await restricted('src/kvm-lab/probe.ts', "import { runInLab } from './lab.js';\nexport const f = runInLab;\n")).toEqual([]);
    expect(await restricted('test/vmm/probe.ts', "import { runInLab } from '../../src/kvm-lab/lab.js';\nexport const f = runInLab;\n")).toEqual([]);
  });

  it('the VMM may not import the sandbox, the shim or the CLI', async () => {
    for (const dir of ['sandbox', 'shim', 'cli']) {
      expect(await restricted('src/vmm/kvm/probe.ts', `import { x } from '../../${dir}/thing.js';\nexport const f = x;\n`)).toEqual([expect.stringMatching(/below the sandbox, the shim and the CLI/)]);
    }
    expect(await restricted('src/vmm/probe.ts', "import { GUEST_EXIT_PATTERN } from '../guest-image/guest-contract.js';\nexport const f = GUEST_EXIT_PATTERN;\n")).toEqual([]);
  });

  it('the guest agent may not import the VMM or the host side', async () => {
    expect(await restricted('src/agent/probe.ts', "import { createVm } from '../vmm/machine.js';\nexport const f = createVm;\n")).toEqual([expect.stringMatching(/runs inside the VM/)]);
    expect(await restricted('src/agent/probe.ts', "import { PodVm } from '../sandbox/pod-vm.js';\nexport const f = PodVm;\n")).toHaveLength(1);
    expect(await restricted('src/agent/probe.ts', "import { runInLab } from '../kvm-lab/lab.js';\nexport const f = runInLab;\n")).toHaveLength(1);
  });

  it("the agent's guest and host sides share only its protocol", async () => {
    expect(await restricted('src/agent/guest/probe.ts', "import { AgentClient } from '../host/client.js';\nexport const f = AgentClient;\n")).toEqual([
      expect.stringMatching(/must not import its host side/),
    ]);
    expect(await restricted('src/agent/host/probe.ts', "import { Containers } from '../guest/containers.js';\nexport const f = Containers;\n")).toEqual([
      expect.stringMatching(/must not import the guest agent/),
    ]);
    expect(await restricted('src/agent/protocol/probe.ts', "import { AgentClient } from '../host/client.js';\nexport const f = AgentClient;\n")).toHaveLength(1);
    expect(await restricted('src/agent/protocol/probe.ts', "import { Reaper } from '../guest/reaper.js';\nexport const f = Reaper;\n")).toHaveLength(1);
    for (const side of ['guest', 'host']) {
      expect(await restricted(`src/agent/${side}/probe.ts`, "import { loadAgentProto } from '../protocol/proto.js';\nexport const f = loadAgentProto;\n")).toEqual([]);
    }
    // The rules before them still hold there.
    expect(await restricted('src/agent/guest/probe.ts', "import { createVm } from '../../vmm/machine.js';\nexport const f = createVm;\n")).toEqual([expect.stringMatching(/runs inside the VM/)]);
    expect(await restricted('src/agent/host/probe.ts', "import { PodVm } from '../../sandbox/pod-vm.js';\nexport const f = PodVm;\n")).toHaveLength(1);
  });

  it('the sandbox may import the VMM', async () => {
    expect(await restricted('src/sandbox/probe.ts', "import { chooseBackend } from '../vmm/backend.js';\nexport const f = chooseBackend;\n")).toEqual([]);
  });
});
