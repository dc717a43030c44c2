import type { ContainerStats } from '../agent/host/reply-checks.js';
import { message, pb } from '../ttrpc/protobuf/schema.js';
import type { Any } from '../ttrpc/protobuf/well-known.js';

/**
 * Task metrics in containerd's cgroup v2 shape (io.containerd.cgroups.v2.Metrics, from containerd/cgroups
 * v2/stats/metrics.proto): the guest runs cgroup v2, whatever the host mounts. Only the fields the agent
 * measures are filled.
 */
const P = 'io.containerd.cgroups.v2.';
const PidsStat = message(`${P}PidsStat`, { current: pb.uint64(1), limit: pb.uint64(2) });
const CPUStat = message(`${P}CPUStat`, {
  usageUsec: pb.uint64(1),
  userUsec: pb.uint64(2),
  systemUsec: pb.uint64(3),
  nrPeriods: pb.uint64(4),
  nrThrottled: pb.uint64(5),
  throttledUsec: pb.uint64(6),
});
const MemoryStat = message(`${P}MemoryStat`, { anon: pb.uint64(1), file: pb.uint64(2), usage: pb.uint64(32), usageLimit: pb.uint64(33) });
const MemoryEvents = message(`${P}MemoryEvents`, { low: pb.uint64(1), high: pb.uint64(2), max: pb.uint64(3), oom: pb.uint64(4), oomKill: pb.uint64(5) });
export const MetricsV2 = message(`${P}Metrics`, {
  pids: pb.message(1, PidsStat),
  cpu: pb.message(2, CPUStat),
  memory: pb.message(4, MemoryStat),
  memoryEvents: pb.message(8, MemoryEvents),
});

/** "max" limits arrive as 0 from the agent; containerd shows a missing limit as the largest value. */
export function metricsAny(s: ContainerStats): Any {
  const value = MetricsV2.encode({
    pids: { current: s.pids?.current ?? 0, limit: s.pids?.limit ?? 0 },
    cpu: {
      usageUsec: s.cpu?.usageUsec ?? 0,
      userUsec: s.cpu?.userUsec ?? 0,
      systemUsec: s.cpu?.systemUsec ?? 0,
      nrThrottled: s.cpu?.nrThrottled ?? 0,
      throttledUsec: s.cpu?.throttledUsec ?? 0,
    },
    memory: { anon: s.memory?.anonBytes ?? 0, file: s.memory?.fileBytes ?? 0, usage: s.memory?.currentBytes ?? 0, usageLimit: s.memory?.limitBytes ?? 0 },
    memoryEvents: { oom: s.memory?.oomEvents ?? 0, oomKill: s.memory?.oomKillEvents ?? 0 },
  });
  return { typeUrl: MetricsV2.typeName, value };
}
