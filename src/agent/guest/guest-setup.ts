/** Pod-level guest setup requests: shares, a busybox rootfs, hostname, DNS, hosts, sysctls. */
import { copyFile, mkdir, symlink, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { checkId } from '../../common/ids.js';
import type { AgentConfig } from './config.js';
import { agentNative } from './native-ops.js';
import { runTracked } from './own-children.js';
import { formatIp, parseIp } from './network.js';
import { checkRelativeUnder } from './request-checks.js';
import { invalid, RpcError } from '../protocol/rpc-error.js';

const run = runTracked;

/** A virtio-fs tag is at most 36 bytes (the device's config field). */
const MAX_TAG_LENGTH = 36;
const HOSTNAME = /^(?=.{1,64}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const DNS_WORD = /^[A-Za-z0-9_.:%-]{1,253}$/;

/** Tags this agent has mounted under its state dir. */
const mountedTags = new Set<string>();

/**
 * Mounts the share once per tag, read-write, under the state dir, then bind-mounts it at the requested
 * path (remounted read-only when asked). virtio-fs gives one superblock per tag, so mounting the tag
 * itself twice with different flags would make every mount share the first one's read-only flag.
 */
export async function mountShare(cfg: AgentConfig, req: { tag: string; path: string; readonly: boolean }): Promise<string> {
  checkId('share tag', req.tag, MAX_TAG_LENGTH);
  const target = checkRelativeUnder('share path', req.path, cfg.shareDir);
  const base = path.join(cfg.stateDir, 'shares', req.tag);
  const step = async (what: string, mounting: Promise<void>) => {
    try {
      await mounting;
    } catch (err) {
      throw new RpcError(status.FAILED_PRECONDITION, `${what} for virtio-fs share ${req.tag} failed: ${(err as Error).message}`);
    }
  };
  const { fsMount } = agentNative();
  if (!mountedTags.has(req.tag)) {
    await mkdir(base, { recursive: true });
    await step(`mounting the tag at ${base}`, fsMount(req.tag, base, 'virtiofs', [], ''));
    mountedTags.add(req.tag);
  }
  await mkdir(target, { recursive: true });
  await step(`bind-mounting it at ${target}`, fsMount(base, target, '', ['bind'], ''));
  if (req.readonly) await step(`making ${target} read-only`, fsMount('', target, '', ['remount', 'bind', 'rdonly'], ''));
  return target;
}

/** The guest's own busybox and a link per applet: a rootfs that needs nothing from the host. */
export async function createBusyboxRootfs(cfg: AgentConfig, rel: string): Promise<string> {
  const root = checkRelativeUnder('rootfs path', rel, cfg.shareDir);
  const bin = path.join(root, 'bin');
  await mkdir(bin, { recursive: true });
  for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc', 'root', 'run']) await mkdir(path.join(root, d), { recursive: true });
  await chmod(path.join(root, 'tmp'), 0o1777);
  await copyFile(cfg.busybox, path.join(bin, 'busybox'));
  await chmod(path.join(bin, 'busybox'), 0o755);
  const { stdout } = await run(cfg.busybox, ['--list']);
  for (const applet of stdout.split('\n').filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== 'busybox')) {
    await symlink('busybox', path.join(bin, applet)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
  await writeFile(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  await writeFile(path.join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  return root;
}

export async function setHostname(cfg: AgentConfig, hostname: string): Promise<void> {
  if (!HOSTNAME.test(hostname)) throw invalid(`hostname ${JSON.stringify(hostname.slice(0, 80))} is not a valid host name`);
  if (cfg.setKernelHostname) await run('hostname', [hostname]);
  await writeFile(path.join(cfg.etcDir, 'hostname'), `${hostname}\n`);
  await writeFile(path.join(cfg.etcDir, 'hosts'), `127.0.0.1 localhost\n::1 localhost\n127.0.1.1 ${hostname}\n`);
}

/** A sysctl name as CRI and sysctl(8) spell it: dotted words (a slash form is refused, never a path). */
const SYSCTL_KEY = /^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$/;
const MAX_SYSCTLS = 64;
const MAX_SYSCTL_VALUE = 4096;

/**
 * Writes each key under /proc/sys (dots become slashes). All are checked before any is written, so a bad
 * request changes nothing; a write the kernel refuses names the key and the kernel's reason.
 */
export async function setSysctls(cfg: AgentConfig, sysctls: { key: string; value: string }[]): Promise<void> {
  if (sysctls.length > MAX_SYSCTLS) throw invalid(`too many sysctls (${sysctls.length}, at most ${MAX_SYSCTLS})`);
  for (const { key, value } of sysctls) {
    if (!SYSCTL_KEY.test(key) || key.length > 256) throw invalid(`sysctl name ${JSON.stringify(key.slice(0, 80))} is not valid`);
    if (value.length > MAX_SYSCTL_VALUE || /[\0\n]/.test(value)) throw invalid(`sysctl ${key}: the value is longer than ${MAX_SYSCTL_VALUE} characters or holds a NUL or newline`);
  }
  for (const { key, value } of sysctls) {
    try {
      await writeFile(path.join(cfg.procSysDir, ...key.split('.')), value, { flag: 'r+' });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new RpcError(e.code === 'ENOENT' ? status.INVALID_ARGUMENT : status.FAILED_PRECONDITION, `sysctl ${key}=${value.slice(0, 80)}: ${e.code === 'ENOENT' ? 'the guest kernel has no such parameter' : e.message}`);
    }
  }
}

export async function setDns(cfg: AgentConfig, req: { nameservers: string[]; searches: string[]; options: string[] }): Promise<void> {
  if (req.nameservers.length > 3 || req.searches.length > 6 || req.options.length > 16) throw invalid('too many DNS entries (at most 3 nameservers, 6 searches, 16 options)');
  for (const w of [...req.nameservers, ...req.searches, ...req.options]) {
    if (!DNS_WORD.test(w)) throw invalid(`DNS entry ${JSON.stringify(w.slice(0, 80))} has characters resolv.conf cannot hold`);
  }
  const lines = [
    ...req.nameservers.map((n) => `nameserver ${n}`),
    ...(req.searches.length ? [`search ${req.searches.join(' ')}`] : []),
    ...(req.options.length ? [`options ${req.options.join(' ')}`] : []),
  ];
  await writeFile(path.join(cfg.etcDir, 'resolv.conf'), lines.length ? `${lines.join('\n')}\n` : '');
}

const MAX_HOSTS_ENTRIES = 256;
const MAX_NAMES_PER_ENTRY = 16;
/** A DNS name: labels of letters, digits, "-" and "_" (as some hosts files carry), at most 253 characters. */
const HOSTS_NAME = /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/**
 * The localhost lines Docker and the kubelet write, then the caller's entries in order. Written in place like
 * resolv.conf: a container that bind-mounts the file keeps seeing the current one (a rename would leave it
 * on the old inode).
 */
export async function setHosts(cfg: AgentConfig, entries: { ip: string; names: string[] }[]): Promise<void> {
  if (entries.length > MAX_HOSTS_ENTRIES) throw invalid(`entries: ${entries.length} given, at most ${MAX_HOSTS_ENTRIES}`);
  const lines = ['127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback', 'fe00::0\tip6-localnet', 'ff00::0\tip6-mcastprefix', 'ff02::1\tip6-allnodes', 'ff02::2\tip6-allrouters'];
  entries.forEach((e, i) => {
    const ip = parseIp(e.ip);
    if (!ip) throw invalid(`entries[${i}].ip ${JSON.stringify(e.ip.slice(0, 80))} is not an IPv4 or IPv6 address`);
    if (e.names.length < 1 || e.names.length > MAX_NAMES_PER_ENTRY) throw invalid(`entries[${i}].names: ${e.names.length} given, 1 to ${MAX_NAMES_PER_ENTRY} allowed`);
    e.names.forEach((n, j) => {
      if (!HOSTS_NAME.test(n)) throw invalid(`entries[${i}].names[${j}] ${JSON.stringify(n.slice(0, 80))} is not a host name`);
    });
    lines.push(`${formatIp(ip)}\t${e.names.join(' ')}`);
  });
  await writeFile(path.join(cfg.etcDir, 'hosts'), `${lines.join('\n')}\n`);
}
