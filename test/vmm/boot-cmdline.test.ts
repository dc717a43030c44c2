import { describe, expect, it } from 'vitest';
import { DEFAULT_CMDLINE_PARAMS, KernelCmdline, buildCmdline } from '../../src/vmm/boot/cmdline.js';
import { CMDLINE_MAX_SIZE, virtioMmioSlot } from '../../src/vmm/layout.js';

describe('kernel command line', () => {
  it('builds defaults, virtio-mmio devices in the kernel syntax, then user parameters', () => {
    const cmd = buildCmdline({ virtio: [virtioMmioSlot(0), virtioMmioSlot(2)], extra: 'quiet init=/init -- arg' });
    const s = cmd.toString();
    const words = s.split(' ');
    expect(words.slice(0, DEFAULT_CMDLINE_PARAMS.length)).toEqual([...DEFAULT_CMDLINE_PARAMS]);
    const devices = words.filter((w) => w.startsWith('virtio_mmio.device='));
    expect(devices).toHaveLength(2);
    for (const [i, d] of devices.entries()) {
      const m = /^virtio_mmio\.device=(\d+)K@0x([0-9a-f]+):(\d+)$/.exec(d)!;
      const slot = virtioMmioSlot(i * 2);
      expect(Number(m[1]) * 1024).toBe(slot.size);
      expect(parseInt(m[2]!, 16)).toBe(slot.addr);
      expect(Number(m[3])).toBe(slot.irq);
    }
    expect(s.indexOf('virtio_mmio')).toBeLessThan(s.indexOf(' -- '));
    const bytes = cmd.toBytes();
    expect(bytes[bytes.length - 1]).toBe(0);
    expect(bytes.length).toBe(s.length + 1);
  });

  it('accepts exactly the capacity minus the NUL and rejects one byte more', () => {
    const cmd = new KernelCmdline();
    cmd.add('a'.repeat(CMDLINE_MAX_SIZE - 1));
    expect(cmd.toBytes().length).toBe(CMDLINE_MAX_SIZE);
    expect(() => new KernelCmdline().add('a'.repeat(CMDLINE_MAX_SIZE))).toThrow(/too long/);
    const small = new KernelCmdline(10).add('abcd');
    expect(() => small.add('efgh')).not.toThrow(); // "abcd efgh" = 9 + NUL
    expect(() => small.add('x')).toThrow(/too long/);
    expect(small.toString()).toBe('abcd efgh');
  });

  it('rejects NUL, control, non-ASCII characters and unbalanced quotes', () => {
    for (const bad of ['a\0b', 'a\nb', 'tab\there', 'caf\u00e9', 'x\u007f', 'init="/bin/sh']) {
      expect(() => new KernelCmdline().add(bad)).toThrow(/forbidden character|unbalanced/);
    }
    expect(new KernelCmdline().add('init="/bin/sh -c x"').toString()).toBe('init="/bin/sh -c x"');
  });
});
