import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeAddonPath } from '../../src/common/native.js';
import { jailerArgs, type JailSpec } from '../../src/vmm/jail/argv.js';
import { jailerBinary } from '../../src/vmm/jail/binary.js';
import { releaseJailId, reserveJailId } from '../../src/vmm/jail/ids.js';
import { topLevelUsrLinks } from '../../src/vmm/jail/vmm-jail.js';
import { arpReplySender, arpRequest, ipBytes, macBytes } from './helpers/net-rig.js';

/**
 * The tap hand-over the jailed native VMM relies on, without a VM: vrun-jailer opens a tap in a network
 * namespace this file makes (as root, `--tap 4:NAME`) and a program running as a jail uid, with no
 * /dev/net/tun, takes it over with the addon's tapAdopt (nonblocking, vnet headers, offloads) and exchanges
 * frames on it: an ARP request to the tap's own address, whose reply the namespace's kernel sends back.
 */

const NS = `vrun-vmmtap-${process.pid}`;
const NS_PATH = `/run/netns/${NS}`;
const TAP = 'vmt0';
const ip = (...args: string[]) => execFileSync('ip', ['-n', NS, ...args], { encoding: 'utf8' });

/** Runs inside the jail: node with the addon, the tap on fd 4. Prints one JSON line of what it saw. */
const PROGRAM = `
const a = require(process.env.VRUN_NATIVE_ADDON);
const out = { uid: process.getuid() };
try { a.tapAdopt(0, 0); } catch (e) { out.stdinRefused = e.message; }
out.offloads = a.tapAdopt(4, 7).offloads;
const buf = Buffer.alloc(2048);
out.emptyRead = a.tapRead(4, buf);
const req = Buffer.from(process.argv[1], 'hex');
out.written = a.tapWrite(4, req, req.length);
const end = Date.now() + 3000;
const frames = [];
(function poll() {
  for (let n; (n = a.tapRead(4, buf)) > 0; ) frames.push(buf.subarray(a.tapVnetHdrSize, n).toString('hex'));
  if (frames.length > 0 || Date.now() > end) { out.frames = frames; console.log(JSON.stringify(out)); return; }
  setTimeout(poll, 10);
})();
`;

describe('a tap handed to the jailed VMM as an fd', () => {
  let work: string;

  beforeAll(() => {
    work = fs.mkdtempSync('/run/vrun-vmmtap-');
    execFileSync('ip', ['netns', 'add', NS]);
    execFileSync('ip', ['netns', 'exec', NS, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    ip('tuntap', 'add', 'dev', TAP, 'mode', 'tap', 'vnet_hdr');
    ip('addr', 'add', '10.214.0.1/24', 'dev', TAP);
    ip('link', 'set', TAP, 'up');
  });

  afterAll(() => {
    execFileSync('ip', ['netns', 'del', NS]);
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('is adopted as a non-root uid without /dev/net/tun, and carries frames both ways', async () => {
    const jid = reserveJailId();
    try {
      const root = path.join(work, 'root');
      fs.mkdirSync(root, { mode: 0o700 });
      const usr = topLevelUsrLinks();
      const addon = fs.realpathSync(nativeAddonPath());
      const spec: JailSpec = {
        uid: jid.id,
        gid: jid.id,
        root,
        roBinds: ['/usr', ...usr.dirs, '/etc/ld.so.cache', addon],
        symlinks: usr.symlinks,
        netns: NS_PATH,
        taps: [{ fd: 4, name: TAP }],
        env: { VRUN_NATIVE_ADDON: addon },
      };
      const guestMac = '02:00:00:21:40:02';
      // A zeroed vnet header (no offload asked), then the frame.
      const frame = Buffer.concat([Buffer.alloc(12), arpRequest(macBytes(guestMac), ipBytes('10.214.0.2'), ipBytes('10.214.0.1'))]);
      const child = spawn(jailerBinary(), jailerArgs(spec, fs.realpathSync(process.execPath), ['-e', PROGRAM, frame.toString('hex')]), { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = await new Promise((r) => child.on('close', r));
      expect(code, err).toBe(0);
      const seen = JSON.parse(out) as { uid: number; stdinRefused?: string; offloads: number; emptyRead: number; written: number; frames: string[] };
      expect(seen.uid).toBe(jid.id);
      expect(seen.stdinRefused).toMatch(/fd 0/);
      // The kernel's tap takes checksum and TSO offloads; nothing waits yet, and the read says so at once.
      expect(seen.offloads).toBe(7);
      expect(seen.emptyRead).toBe(-11);
      expect(seen.written).toBe(frame.length);
      // The namespace's kernel answered for its own address, to the MAC that asked.
      const replies = seen.frames.map((f) => Buffer.from(f, 'hex')).filter((f) => arpReplySender(f) !== undefined);
      expect(replies.map((f) => [...f.subarray(28, 32)].join('.'))).toContain('10.214.0.1');
      expect(replies.map((f) => f.subarray(0, 6).toString('hex'))).toContain(guestMac.replace(/:/g, ''));
    } finally {
      releaseJailId(jid);
    }
  });
});
