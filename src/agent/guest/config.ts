/** Where the agent keeps things and what it drives; flags (host tests) or environment (the guest init). */
import path from 'node:path';
import { VrunError } from '../../common/errors.js';

export interface AgentConfig {
  /** Bundles, crun's state, console sockets: /run/vrun-agent in the guest. */
  stateDir: string;
  /** Where shares are mounted and container rootfs live: /run/vrun/shared in the guest. */
  shareDir: string;
  /** The unix socket the gRPC server listens on. */
  socketPath: string;
  /** In the guest: the virtio-console port name to bridge to the socket ("vrun.agent"). */
  portName: string | null;
  crun: string;
  /**
   * The first line of `crun --version`, when known without running crun: the guest init passes the one the
   * initrd build recorded, since crun's first start costs about 300 ms under TCG.
   */
  crunVersion: string | null;
  /** The cgroup v2 mount holding the containers' cgroups (under vrun/<id>). */
  cgroupRoot: string;
  /** Where SetDns writes resolv.conf (and hosts for SetHostname). */
  etcDir: string;
  busybox: string;
  /** SetHostname really sets the kernel hostname (guest, or a private UTS namespace on the host). */
  setKernelHostname: boolean;
  /** Where SetSysctls writes: /proc/sys in the guest, a plain directory for agents run by host tests. */
  procSysDir: string;
}

const USAGE = 'usage: agent [--socket PATH] [--state-dir DIR] [--share-dir DIR] [--port NAME] [--etc-dir DIR] [--proc-sys-dir DIR] [--no-kernel-hostname]';

export function parseAgentConfig(argv: string[], env: NodeJS.ProcessEnv): AgentConfig {
  const stateDir = env.VRUN_AGENT_STATE_DIR ?? '/run/vrun-agent';
  const cfg: AgentConfig = {
    stateDir,
    shareDir: env.VRUN_AGENT_SHARE_DIR ?? '/run/vrun/shared',
    socketPath: env.VRUN_AGENT_SOCKET ?? path.join(stateDir, 'agent.sock'),
    portName: env.VRUN_AGENT_PORT ?? null,
    crun: env.VRUN_AGENT_CRUN ?? 'crun',
    crunVersion: env.VRUN_AGENT_CRUN_VERSION?.slice(0, 200) || null,
    cgroupRoot: env.VRUN_AGENT_CGROUP_ROOT ?? '/sys/fs/cgroup',
    etcDir: env.VRUN_AGENT_ETC_DIR ?? '/etc',
    busybox: env.VRUN_AGENT_BUSYBOX ?? '/bin/busybox',
    setKernelHostname: true,
    procSysDir: env.VRUN_AGENT_PROC_SYS_DIR ?? '/proc/sys',
  };
  let socketGiven = env.VRUN_AGENT_SOCKET !== undefined;
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    if (flag === '--no-kernel-hostname') {
      cfg.setKernelHostname = false;
      continue;
    }
    const value = argv[i + 1];
    if (value === undefined) throw new VrunError(`${flag} needs a value; ${USAGE}`);
    i++;
    switch (flag) {
      case '--socket': cfg.socketPath = value; socketGiven = true; break;
      case '--state-dir': cfg.stateDir = value; break;
      case '--share-dir': cfg.shareDir = value; break;
      case '--port': cfg.portName = value; break;
      case '--etc-dir': cfg.etcDir = value; break;
      case '--cgroup-root': cfg.cgroupRoot = value; break;
      case '--busybox': cfg.busybox = value; break;
      case '--proc-sys-dir': cfg.procSysDir = value; break;
      default: throw new VrunError(`unknown flag ${flag}; ${USAGE}`);
    }
  }
  if (!socketGiven) cfg.socketPath = path.join(cfg.stateDir, 'agent.sock');
  return cfg;
}
