/**
 * containerd's shared API types used by the shim protocol (proto/containerd/api/types/mount.proto and
 * proto/containerd/api/types/task/task.proto, containerd 1.6).
 */
import { message, pb, type MessageOf } from '../../ttrpc/protobuf/schema.js';
import { Any, Timestamp } from '../../ttrpc/protobuf/well-known.js';

export const Mount = message('containerd.types.Mount', {
  type: pb.string(1),
  source: pb.string(2),
  target: pb.string(3),
  options: pb.repeated.string(4),
});
export type Mount = MessageOf<typeof Mount>;

/** containerd.v1.types.Status: the state of a task or exec process. */
export const TaskStatus = {
  UNKNOWN: 0,
  CREATED: 1,
  RUNNING: 2,
  STOPPED: 3,
  PAUSED: 4,
  PAUSING: 5,
} as const;
export type TaskStatus = (typeof TaskStatus)[keyof typeof TaskStatus];

export const ProcessInfo = message('containerd.v1.types.ProcessInfo', {
  pid: pb.uint32(1),
  /** Platform-specific detail; containerd's runc shim puts a runc ProcessDetails {exec_id} here. */
  info: pb.message(2, Any),
});
export type ProcessInfo = MessageOf<typeof ProcessInfo>;

export const Process = message('containerd.v1.types.Process', {
  containerId: pb.string(1),
  id: pb.string(2),
  pid: pb.uint32(3),
  status: pb.enum(4),
  stdin: pb.string(5),
  stdout: pb.string(6),
  stderr: pb.string(7),
  terminal: pb.bool(8),
  exitStatus: pb.uint32(9),
  exitedAt: pb.message(10, Timestamp),
});
export type Process = MessageOf<typeof Process>;
