/**
 * Task events a shim publishes (proto/containerd/api/events/task.proto, package containerd.events) and
 * the ttrpc Events service envelope they travel in (proto/containerd/api/services/ttrpc/events/v1/events.proto).
 */
import { message, pb, type MessageOf, type MessageType } from '../../ttrpc/protobuf/schema.js';
import { Any, Empty, Timestamp } from '../../ttrpc/protobuf/well-known.js';
import { Mount } from './types.js';

const P = 'containerd.events.';

export const TaskIO = message(`${P}TaskIO`, { stdin: pb.string(1), stdout: pb.string(2), stderr: pb.string(3), terminal: pb.bool(4) });

export const TaskCreate = message(`${P}TaskCreate`, {
  containerId: pb.string(1),
  bundle: pb.string(2),
  rootfs: pb.repeated.message(3, Mount),
  io: pb.message(4, TaskIO),
  checkpoint: pb.string(5),
  pid: pb.uint32(6),
});
export type TaskCreate = MessageOf<typeof TaskCreate>;

export const TaskStart = message(`${P}TaskStart`, { containerId: pb.string(1), pid: pb.uint32(2) });
export type TaskStart = MessageOf<typeof TaskStart>;

export const TaskDelete = message(`${P}TaskDelete`, {
  containerId: pb.string(1),
  pid: pb.uint32(2),
  exitStatus: pb.uint32(3),
  exitedAt: pb.message(4, Timestamp),
  /** The exec id; empty for the task's init process. */
  id: pb.string(5),
});
export type TaskDelete = MessageOf<typeof TaskDelete>;

export const TaskExit = message(`${P}TaskExit`, {
  containerId: pb.string(1),
  /** The exec id, or the container id for the init process (what containerd's runc shim sends). */
  id: pb.string(2),
  pid: pb.uint32(3),
  exitStatus: pb.uint32(4),
  exitedAt: pb.message(5, Timestamp),
});
export type TaskExit = MessageOf<typeof TaskExit>;

export const TaskOOM = message(`${P}TaskOOM`, { containerId: pb.string(1) });
export type TaskOOM = MessageOf<typeof TaskOOM>;

export const TaskExecAdded = message(`${P}TaskExecAdded`, { containerId: pb.string(1), execId: pb.string(2) });
export type TaskExecAdded = MessageOf<typeof TaskExecAdded>;

export const TaskExecStarted = message(`${P}TaskExecStarted`, { containerId: pb.string(1), execId: pb.string(2), pid: pb.uint32(3) });
export type TaskExecStarted = MessageOf<typeof TaskExecStarted>;

export const TaskPaused = message(`${P}TaskPaused`, { containerId: pb.string(1) });
export type TaskPaused = MessageOf<typeof TaskPaused>;

export const TaskResumed = message(`${P}TaskResumed`, { containerId: pb.string(1) });
export type TaskResumed = MessageOf<typeof TaskResumed>;

/** Each event with its topic (containerd's runtime/events.go). The Any type URL is the message's full name. */
export const TaskEvents = {
  TaskCreate: { topic: '/tasks/create', type: TaskCreate },
  TaskStart: { topic: '/tasks/start', type: TaskStart },
  TaskOOM: { topic: '/tasks/oom', type: TaskOOM },
  TaskExit: { topic: '/tasks/exit', type: TaskExit },
  TaskDelete: { topic: '/tasks/delete', type: TaskDelete },
  TaskExecAdded: { topic: '/tasks/exec-added', type: TaskExecAdded },
  TaskExecStarted: { topic: '/tasks/exec-started', type: TaskExecStarted },
  TaskPaused: { topic: '/tasks/paused', type: TaskPaused },
  TaskResumed: { topic: '/tasks/resumed', type: TaskResumed },
} as const satisfies Record<string, { topic: string; type: MessageType<unknown, never> }>;
export type TaskEventKind = keyof typeof TaskEvents;

export const EVENTS_SERVICE = 'containerd.services.events.ttrpc.v1.Events';

export const Envelope = message('containerd.services.events.ttrpc.v1.Envelope', {
  timestamp: pb.message(1, Timestamp),
  namespace: pb.string(2),
  topic: pb.string(3),
  event: pb.message(4, Any),
});
export type Envelope = MessageOf<typeof Envelope>;

export const ForwardRequest = message('containerd.services.events.ttrpc.v1.ForwardRequest', { envelope: pb.message(1, Envelope) });
export type ForwardRequest = MessageOf<typeof ForwardRequest>;

export const ForwardResponse = Empty;
