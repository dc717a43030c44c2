import { describe, expect, it } from 'vitest';
import { GuestMemory } from '../../src/vmm/virtio/guest-memory.js';
import {
  MAX_INDIRECT_ENTRIES,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  Virtqueue,
} from '../../src/vmm/virtio/queue.js';
import { GuardedRam, SimDriver, prng } from './helpers/virtq-driver.js';

const RAM = 256 * 1024;
const DATA = 0x20000;

function setup(size = 8, eventIdx = false) {
  const ram = new GuardedRam(RAM);
  const drv = new SimDriver(ram, size);
  const q = new Virtqueue('test', drv.config(eventIdx), ram.memory);
  return { ram, drv, q };
}

describe('guest memory', () => {
  it('hands out views only for spans wholly inside one RAM range', () => {
    const a = Buffer.alloc(0x1000);
    const b = Buffer.alloc(0x1000);
    const mem = new GuestMemory([
      { guestAddr: 0x10000, buf: b },
      { guestAddr: 0, buf: a },
    ]);
    expect(mem.size).toBe(0x2000);
    expect(mem.slice(0xff0, 0x10)?.length).toBe(0x10);
    expect(mem.slice(0xff0, 0x11)).toBeUndefined();
    expect(mem.slice(0x1000, 1)).toBeUndefined();
    expect(mem.slice(0x10000, 0x1000)?.length).toBe(0x1000);
    expect(mem.slice(0x10fff, 2)).toBeUndefined();
    expect(mem.slice(-1, 1)).toBeUndefined();
    expect(mem.slice(2 ** 60, 1)).toBeUndefined();
    expect(mem.slice(0, Number.NaN)).toBeUndefined();
    mem.slice(0x10000, 4)!.writeUInt32LE(0xdeadbeef, 0);
    expect(b.readUInt32LE(0)).toBe(0xdeadbeef);
  });

  it('refuses overlapping ranges', () => {
    expect(() => new GuestMemory([
      { guestAddr: 0, buf: Buffer.alloc(0x2000) },
      { guestAddr: 0x1000, buf: Buffer.alloc(0x1000) },
    ])).toThrow(/overlap/);
  });
});

describe('split virtqueue', () => {
  it('walks a chain of readable then writable buffers and returns it through the used ring', () => {
    const { ram, drv, q } = setup();
    ram.ram.write('hello ', DATA);
    ram.ram.write('world', DATA + 0x100);
    const head = drv.addChain([
      { addr: DATA, len: 6 },
      { addr: DATA + 0x100, len: 5 },
      { addr: DATA + 0x1000, len: 64, write: true },
    ]);
    expect(q.pending()).toBe(1);
    const chain = q.pop()!;
    expect(chain.head).toBe(head);
    expect(Buffer.concat(chain.readable).toString()).toBe('hello world');
    expect(chain.writableBytes).toBe(64);
    chain.writable[0]!.write('reply');
    expect(q.pushUsed(chain, 5)).toBe(true);
    expect(q.pop()).toBeUndefined();
    expect(drv.takeUsed()).toEqual([{ id: head, len: 5 }]);
    expect(ram.ram.toString('utf8', DATA + 0x1000, DATA + 0x1005)).toBe('reply');
    expect(q.error).toBeUndefined();
  });

  it('follows indirect tables', () => {
    const { ram, drv, q } = setup();
    ram.ram.write('abc', DATA);
    const head = drv.addIndirect(DATA + 0x2000, [
      { addr: DATA, len: 3 },
      { addr: DATA + 0x10, len: 1 },
      { addr: DATA + 0x100, len: 16, write: true },
      { addr: DATA + 0x200, len: 16, write: true },
    ]);
    const chain = q.pop()!;
    expect(chain.head).toBe(head);
    expect(chain.readable.map((b) => b.length)).toEqual([3, 1]);
    expect(chain.writable.map((b) => b.length)).toEqual([16, 16]);
    expect(chain.readable[0]!.toString()).toBe('abc');
    expect(q.pushUsed(chain, 32)).toBe(true);
    expect(drv.takeUsed()).toEqual([{ id: head, len: 32 }]);
  });

  it('refuses indirect descriptors that were not negotiated', () => {
    const ram = new GuardedRam(RAM);
    const drv = new SimDriver(ram, 8);
    const q = new Virtqueue('noind', drv.config(false, false), ram.memory);
    drv.addIndirect(DATA, [{ addr: DATA + 0x100, len: 4 }]);
    expect(q.pop()).toBeUndefined();
    expect(q.error?.message).toMatch(/VIRTIO_F_INDIRECT_DESC was not negotiated/);
  });

  it('wraps its 16-bit indices and the ring positions over many rounds', () => {
    const ram = new GuardedRam(RAM);
    const drv = new SimDriver(ram, 4);
    // Start both sides just below the wrap so the test crosses 0xffff -> 0; the device takes its
    // starting point from the used index in the ring.
    const base = 0xfff0;
    drv.setAvailIdx(base);
    drv.lastUsed = base;
    ram.ram.writeUInt16LE(base, drv.usedAddr + 2);
    const q3 = new Virtqueue('wrap', drv.config(), ram.memory);
    expect(q3.error).toBeUndefined();
    let seen = 0;
    for (let round = 0; round < 40; round++) {
      const heads = [0, 1].map((k) => drv.addChain([{ addr: DATA + 0x100 * k, len: 64, write: true }]));
      for (const h of heads) {
        const c = q3.pop()!;
        expect(c.head).toBe(h);
        expect(q3.pushUsed(c, round)).toBe(true);
      }
      const used = drv.takeUsed();
      expect(used).toEqual(heads.map((id) => ({ id, len: round })));
      seen += used.length;
    }
    expect(seen).toBe(80);
    expect(drv.availIdx).toBe((base + 80) & 0xffff);
    expect(drv.usedIdx()).toBe((base + 80) & 0xffff);
    expect(q3.error).toBeUndefined();
  });

  it('asks for interrupts by the event index when negotiated, by the flag otherwise', () => {
    const { drv, q } = setup(8, true);
    const round = () => {
      const c = q.pop()!;
      q.pushUsed(c, 0);
    };
    drv.setUsedEvent(0);
    drv.addChain([{ addr: DATA, len: 4 }]);
    round();
    // The device publishes avail_event = how far it has read.
    expect(drv.availEvent()).toBe(1);
    expect(q.needsInterrupt()).toBe(true); // used went 0 -> 1, driver asked for after 0
    drv.setUsedEvent(5);
    drv.addChain([{ addr: DATA, len: 4 }]);
    round();
    expect(q.needsInterrupt()).toBe(false); // used 1 -> 2, driver wants to hear after 5
    for (let i = 0; i < 4; i++) {
      drv.addChain([{ addr: DATA, len: 4 }]);
      round();
    }
    expect(q.needsInterrupt()).toBe(true); // used 2 -> 6 crosses 5
    expect(q.needsInterrupt()).toBe(false); // nothing new

    const plain = setup(8, false);
    plain.drv.addChain([{ addr: DATA, len: 4 }]);
    plain.q.pushUsed(plain.q.pop()!, 0);
    expect(plain.q.needsInterrupt()).toBe(true);
    plain.drv.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
    plain.drv.addChain([{ addr: DATA, len: 4 }]);
    plain.q.pushUsed(plain.q.pop()!, 0);
    expect(plain.q.needsInterrupt()).toBe(false);
  });

  it('refuses device mistakes without touching the rings', () => {
    const { drv, q } = setup();
    drv.addChain([{ addr: DATA, len: 4, write: true }]);
    const c = q.pop()!;
    expect(q.pushUsed(c, 5)).toBe(false);
    expect(q.error?.message).toMatch(/5 bytes written into chain 0, which has 4 writable/);
    expect(drv.usedIdx()).toBe(0);
  });
});

describe('split virtqueue against a hostile guest', () => {
  const cases: [string, (drv: SimDriver) => void, RegExp][] = [
    ['buffer outside RAM', (d) => d.addChain([{ addr: RAM - 4, len: 8 }]), /outside guest RAM/],
    ['address above 2^53', (d) => d.addChain([{ addr: 2 ** 60, len: 1 }]), /outside guest RAM/],
    ['length near 2^32', (d) => d.addChain([{ addr: DATA, len: 0xffff_fff0 }]), /outside guest RAM/],
    ['descriptor loop', (d) => {
      d.writeDesc(d.descAddr, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
      d.writeDesc(d.descAddr, 1, DATA, 4, VIRTQ_DESC_F_NEXT, 0);
      d.publish(0);
    }, /loop/],
    ['self loop', (d) => {
      d.writeDesc(d.descAddr, 3, DATA, 4, VIRTQ_DESC_F_NEXT, 3);
      d.publish(3);
    }, /loop/],
    ['next past the queue', (d) => {
      d.writeDesc(d.descAddr, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 8);
      d.publish(0);
    }, /links to 8, past its table of 8/],
    ['head past the queue', (d) => d.publish(9), /names descriptor 9, past the queue size 8/],
    ['available index too far ahead', (d) => d.setAvailIdx(9), /9 entries past/],
    ['available index moved backwards', (d) => d.setAvailIdx(0xffff), /65535 entries past/],
    ['readable after writable', (d) => d.addChain([{ addr: DATA, len: 4, write: true }, { addr: DATA, len: 4 }]), /readable descriptor after a writable/],
    ['indirect loop', (d) => {
      d.writeDesc(DATA, 0, DATA + 0x100, 4, VIRTQ_DESC_F_NEXT, 1);
      d.writeDesc(DATA, 1, DATA + 0x100, 4, VIRTQ_DESC_F_NEXT, 0);
      d.writeDesc(d.descAddr, 0, DATA, 32, VIRTQ_DESC_F_INDIRECT, 0);
      d.publish(0);
    }, /loop/],
    ['nested indirect', (d) => {
      d.writeDesc(DATA, 0, DATA + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
      d.writeDesc(d.descAddr, 0, DATA, 16, VIRTQ_DESC_F_INDIRECT, 0);
      d.publish(0);
    }, /another indirect/],
    ['indirect table outside RAM', (d) => {
      d.writeDesc(d.descAddr, 0, RAM - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
      d.publish(0);
    }, /not inside guest RAM/],
    ['huge indirect table', (d) => {
      d.writeDesc(d.descAddr, 0, DATA, 16 * (MAX_INDIRECT_ENTRIES + 1), VIRTQ_DESC_F_INDIRECT, 0);
      d.publish(0);
    }, /not 1..1024 descriptors/],
    ['indirect length not a multiple of 16', (d) => {
      d.writeDesc(d.descAddr, 0, DATA, 17, VIRTQ_DESC_F_INDIRECT, 0);
      d.publish(0);
    }, /not 1..1024 descriptors/],
    ['indirect with next', (d) => {
      d.writeDesc(d.descAddr, 0, DATA, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
      d.publish(0);
    }, /also has NEXT/],
    ['same head twice', (d) => {
      d.addChain([{ addr: DATA, len: 4 }]);
      d.publish(0);
    }, /still holds it/],
  ];

  for (const [name, build, expected] of cases) {
    it(`stops the queue on ${name}`, () => {
      const { ram, drv, q } = setup(8);
      build(drv);
      let popped = 0;
      while (q.pop() && popped < 100) popped++;
      expect(q.error?.message).toMatch(expected);
      expect(q.error?.name).toBe('QueueError');
      expect(q.pop()).toBeUndefined();
      expect(q.pending()).toBe(0);
      expect(ram.canariesIntact()).toBe(true);
    });
  }

  it('refuses rings that do not fit guest RAM or are misaligned', () => {
    const ram = new GuardedRam(RAM);
    const mk = (over: Partial<ReturnType<SimDriver['config']>>) => {
      const base = new SimDriver(ram, 8).config();
      return new Virtqueue('cfg', { ...base, ...over }, ram.memory).error?.message;
    };
    expect(mk({ size: 3 })).toMatch(/not a power of two/);
    expect(mk({ size: 65536 })).toMatch(/not a power of two/);
    expect(mk({ descAddr: RAM - 64 })).toMatch(/descriptor table .* not inside guest RAM/);
    expect(mk({ usedAddr: RAM - 8 })).toMatch(/used ring/);
    expect(mk({ availAddr: 0x1001 })).toMatch(/misaligned/);
    expect(mk({})).toBeUndefined();
  });

  it('survives 10,000 random hostile rings without touching memory outside guest RAM', () => {
    const rand = prng(0x5eed);
    const ramSize = 64 * 1024;
    const ram = new GuardedRam(ramSize, 0x100000);
    const g = ram.guestBase;
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const u32 = () => Math.floor(rand() * 2 ** 32);
    const addrOf = () =>
      rand() < 0.85 ? g + 0x4000 + Math.floor(rand() * 0x3000) : pick([
        () => g + Math.floor(rand() * ramSize),
        () => g + ramSize - Math.floor(rand() * 64),
        () => g - Math.floor(rand() * 64),
        () => u32() + Math.floor(rand() * 4) * 2 ** 32,
        () => 2 ** 63 + u32(),
        () => 0,
      ])();
    const lenOf = () => rand() < 0.85 ? Math.floor(rand() * 4096) : pick([() => Math.floor(rand() * 256), () => 0xffff_ffff - Math.floor(rand() * 64), () => u32(), () => 0, () => ramSize])();
    let chains = 0;
    let broken = 0;
    for (let iter = 0; iter < 10_000; iter++) {
      const size = 2 ** Math.floor(rand() * 9);
      const drv = new SimDriver(ram, size, g + 0x1000);
      const q = new Virtqueue('fuzz', drv.config(rand() < 0.5, rand() < 0.8), ram.memory);
      expect(q.error).toBeUndefined();
      for (let i = 0; i < size; i++) {
        const flags = rand() < 0.9 ? pick([0, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE]) : pick([0, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT, Math.floor(rand() * 65536)]);
        const next = rand() < 0.8 ? Math.floor(rand() * size) : Math.floor(rand() * 65536);
        drv.writeDesc(drv.descAddr, i, addrOf(), lenOf(), flags, next);
      }
      // Some descriptors get a plausible indirect table full of more garbage.
      if (rand() < 0.3) {
        const table = g + 0x8000 + 16 * Math.floor(rand() * 64);
        const n = 1 + Math.floor(rand() * 32);
        for (let i = 0; i < n; i++) drv.writeDesc(table, i, addrOf(), lenOf(), pick([0, 1, 2, 3, 4, 5]), Math.floor(rand() * (n + 2)));
        drv.writeDesc(drv.descAddr, Math.floor(rand() * size), table, 16 * n, VIRTQ_DESC_F_INDIRECT, 0);
      }
      const availOff = drv.availAddr - g;
      for (let i = 0; i < size; i++) ram.ram.writeUInt16LE(rand() < 0.9 ? Math.floor(rand() * size) : Math.floor(rand() * 65536), availOff + 4 + 2 * i);
      ram.ram.writeUInt16LE(Math.floor(rand() * 65536), availOff + 4 + 2 * size);
      drv.setAvailFlags(Math.floor(rand() * 4));
      drv.setAvailIdx(rand() < 0.7 ? Math.floor(rand() * (size + 1)) : Math.floor(rand() * 65536));

      for (let n = 0; n < 2 * size + 2; n++) {
        const c = q.pop();
        if (!c) break;
        chains++;
        for (const b of c.readable) b.reduce((s, x) => s + x, 0);
        for (const b of c.writable) b.fill(0x5a);
        q.pushUsed(c, Math.floor(rand() * (c.writableBytes + 1)));
        q.needsInterrupt();
      }
      if (q.error) broken++;
      if ((iter & 255) === 0) expect(ram.canariesIntact()).toBe(true);
      ram.ram.fill(0);
    }
    expect(ram.canariesIntact()).toBe(true);
    // The generator must exercise both outcomes, or the test proves nothing.
    expect(chains).toBeGreaterThan(1000);
    expect(broken).toBeGreaterThan(1000);
  });
});
