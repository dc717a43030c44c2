/**
 * Small programs run inside a test's network namespaces (through nsenter): a TCP server and client in Node,
 * and a stand-in "guest" on a tap in Python (it needs TUNSETIFF, which Node cannot ioctl). They only ever talk
 * to addresses inside the test's own namespaces.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { run } from '../../src/network/exec.js';

function nsSpawn(netns: string, argv: string[]): ChildProcess {
  if (!netns) throw new Error('refusing to run a test network program outside a test namespace');
  return spawn('nsenter', [`--net=${netns}`, '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Resolves with the child once it printed `marker` on stdout; rejects if it exits first or takes too long. */
function waitFor(child: ChildProcess, marker: string, timeoutMs = 10_000): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no "${marker}" within ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes(marker)) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before "${marker}": ${err}`));
    });
  });
}

const SERVER = `
const net = require('node:net');
const [port, reply] = process.argv.slice(1);
net.createServer((s) => s.end(reply)).listen(Number(port), '0.0.0.0', () => console.log('listening'));
`;

const CLIENT = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
const s = net.connect({ host, port: Number(port), timeout: 3000 });
let got = '';
s.on('data', (b) => (got += b));
s.on('end', () => { console.log(got); process.exit(0); });
s.on('timeout', () => { console.error('timeout'); process.exit(2); });
s.on('error', (e) => { console.error(e.code || e.message); process.exit(1); });
`;

export async function tcpServer(netns: string, port: number, reply: string): Promise<{ stop(): void }> {
  const child = await waitFor(nsSpawn(netns, [process.execPath, '-e', SERVER, String(port), reply]), 'listening');
  return { stop: () => child.kill('SIGKILL') };
}

/** What the server at host:port sent, or throws with the client's error (ECONNREFUSED, timeout, ...). */
export async function tcpGet(netns: string, host: string, port: number): Promise<string> {
  if (!netns) throw new Error('refusing to connect from outside a test namespace');
  const r = await run([process.execPath, '-e', CLIENT, host, String(port)], { netns, timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`tcp ${host}:${port} from ${netns}: ${r.stderr.trim() || r.code}`);
  return r.stdout.trim();
}

const TAP_GUEST = String.raw`
import fcntl, os, struct, sys, select, time
tap, ip, mac, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, TUNSETIFF = 0x0002, 0x1000, 0x4000, 0x400454ca
HDR = 10  # struct virtio_net_hdr, the tap's default vnet header size
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', tap.encode(), IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
print('ready', flush=True)
myip = bytes(int(x) for x in ip.split('.'))
mymac = bytes.fromhex(mac.replace(':', ''))
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
frames = arp = icmp = 0
end = time.time() + secs
while time.time() < end:
    if not select.select([fd], [], [], 0.1)[0]: continue
    f = os.read(fd, 65536)[HDR:]
    frames += 1
    src, et = f[6:12], struct.unpack('!H', f[12:14])[0]
    if et == 0x0806 and f[20:22] == b'\x00\x01' and f[38:42] == myip:
        os.write(fd, bytes(HDR) + src + mymac + b'\x08\x06' + f[14:20] + b'\x00\x02' + mymac + myip + f[22:28] + f[28:32])
        arp += 1
    elif et == 0x0800 and f[23] == 1 and f[30:34] == myip:
        ihl = (f[14] & 0xf) * 4
        iph, payload = f[14:14 + ihl], f[14 + ihl:]
        if payload[0] != 8: continue
        r = b'\x00\x00\x00\x00' + payload[4:]
        r = r[:2] + struct.pack('!H', csum(r)) + r[4:]
        h = bytearray(iph)
        h[12:16], h[16:20], h[8], h[10:12] = iph[16:20], iph[12:16], 64, b'\0\0'
        h[10:12] = struct.pack('!H', csum(bytes(h)))
        os.write(fd, bytes(HDR) + src + mymac + b'\x08\x00' + bytes(h) + r)
        icmp += 1
print('frames=%d arp=%d icmp=%d' % (frames, arp, icmp), flush=True)
`;

/**
 * Plays the guest on `tap` for `seconds`: answers ARP and ping for `ip` with `mac`, as a VM NIC given the
 * veth's MAC and address would. Resolves once it is attached; `done` with its counters when it stops.
 */
export async function tapGuest(netns: string, tap: string, ip: string, mac: string, seconds: number): Promise<{ done: Promise<{ frames: number; arp: number; icmp: number }> }> {
  const child = await waitFor(nsSpawn(netns, ['/usr/bin/python3', '-c', TAP_GUEST, tap, ip, mac, String(seconds)]), 'ready');
  // Wrapped: an async function returning a bare promise would wait for it.
  return { done: new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    child.on('exit', () => {
      const m = /frames=(\d+) arp=(\d+) icmp=(\d+)/.exec(out);
      if (m) resolve({ frames: Number(m[1]), arp: Number(m[2]), icmp: Number(m[3]) });
      else reject(new Error(`tap guest printed ${JSON.stringify(out)}`));
    });
  }) };
}
