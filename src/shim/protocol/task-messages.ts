/**
 * Messages of the shim v2 Task service, containerd 1.6 (proto/containerd/runtime/v2/task/shim.proto,
 * package containerd.task.v2). Field names are the proto names in lowerCamelCase.
 */
import { message, pb, type MessageOf } from '../../ttrpc/protobuf/schema.js';
import { Any, Timestamp } from '../../ttrpc/protobuf/well-known.js';
import { Mount, ProcessInfo } from './types.js';

const P = 'containerd.task.v2.';

export const CreateTaskRequest = message(`${P}CreateTaskRequest`, {
  id: pb.string(1),
  bundle: pb.string(2),
  rootfs: pb.repeated.message(3, Mount),
  terminal: pb.bool(4),
  stdin: pb.string(5),
  stdout: pb.string(6),
  stderr: pb.string(7),
  checkpoint: pb.string(8),
  parentCheckpoint: pb.string(9),
  /** Runtime options from containerd's runtime config (for runc: containerd.runc.v1.Options). */
  options: pb.message(10, Any),
});
export type CreateTaskRequest = MessageOf<typeof CreateTaskRequest>;

export const CreateTaskResponse = message(`${P}CreateTaskResponse`, { pid: pb.uint32(1) });
export type CreateTaskResponse = MessageOf<typeof CreateTaskResponse>;

export const DeleteRequest = message(`${P}DeleteRequest`, { id: pb.string(1), execId: pb.string(2) });
export type DeleteRequest = MessageOf<typeof DeleteRequest>;

export const DeleteResponse = message(`${P}DeleteResponse`, {
  pid: pb.uint32(1),
  exitStatus: pb.uint32(2),
  exitedAt: pb.message(3, Timestamp),
});
export type DeleteResponse = MessageOf<typeof DeleteResponse>;

export const ExecProcessRequest = message(`${P}ExecProcessRequest`, {
  id: pb.string(1),
  execId: pb.string(2),
  terminal: pb.bool(3),
  stdin: pb.string(4),
  stdout: pb.string(5),
  stderr: pb.string(6),
  /** The OCI runtime-spec Process as JSON, type URL "types.containerd.io/opencontainers/runtime-spec/1/Process". */
  spec: pb.message(7, Any),
});
export type ExecProcessRequest = MessageOf<typeof ExecProcessRequest>;

export const ExecProcessResponse = message(`${P}ExecProcessResponse`, {});
export type ExecProcessResponse = MessageOf<typeof ExecProcessResponse>;

export const ResizePtyRequest = message(`${P}ResizePtyRequest`, {
  id: pb.string(1),
  execId: pb.string(2),
  width: pb.uint32(3),
  height: pb.uint32(4),
});
export type ResizePtyRequest = MessageOf<typeof ResizePtyRequest>;

export const StateRequest = message(`${P}StateRequest`, { id: pb.string(1), execId: pb.string(2) });
export type StateRequest = MessageOf<typeof StateRequest>;

export const StateResponse = message(`${P}StateResponse`, {
  id: pb.string(1),
  bundle: pb.string(2),
  pid: pb.uint32(3),
  /** A TaskStatus value. */
  status: pb.enum(4),
  stdin: pb.string(5),
  stdout: pb.string(6),
  stderr: pb.string(7),
  terminal: pb.bool(8),
  exitStatus: pb.uint32(9),
  exitedAt: pb.message(10, Timestamp),
  execId: pb.string(11),
});
export type StateResponse = MessageOf<typeof StateResponse>;

export const KillRequest = message(`${P}KillRequest`, {
  id: pb.string(1),
  execId: pb.string(2),
  signal: pb.uint32(3),
  all: pb.bool(4),
});
export type KillRequest = MessageOf<typeof KillRequest>;

export const CloseIORequest = message(`${P}CloseIORequest`, { id: pb.string(1), execId: pb.string(2), stdin: pb.bool(3) });
export type CloseIORequest = MessageOf<typeof CloseIORequest>;

export const PidsRequest = message(`${P}PidsRequest`, { id: pb.string(1) });
export type PidsRequest = MessageOf<typeof PidsRequest>;

export const PidsResponse = message(`${P}PidsResponse`, { processes: pb.repeated.message(1, ProcessInfo) });
export type PidsResponse = MessageOf<typeof PidsResponse>;

export const CheckpointTaskRequest = message(`${P}CheckpointTaskRequest`, {
  id: pb.string(1),
  path: pb.string(2),
  options: pb.message(3, Any),
});
export type CheckpointTaskRequest = MessageOf<typeof CheckpointTaskRequest>;

export const UpdateTaskRequest = message(`${P}UpdateTaskRequest`, {
  id: pb.string(1),
  /** OCI LinuxResources as JSON, type URL "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources". */
  resources: pb.message(2, Any),
  annotations: pb.stringMap(3),
});
export type UpdateTaskRequest = MessageOf<typeof UpdateTaskRequest>;

export const StartRequest = message(`${P}StartRequest`, { id: pb.string(1), execId: pb.string(2) });
export type StartRequest = MessageOf<typeof StartRequest>;

export const StartResponse = message(`${P}StartResponse`, { pid: pb.uint32(1) });
export type StartResponse = MessageOf<typeof StartResponse>;

export const WaitRequest = message(`${P}WaitRequest`, { id: pb.string(1), execId: pb.string(2) });
export type WaitRequest = MessageOf<typeof WaitRequest>;

export const WaitResponse = message(`${P}WaitResponse`, { exitStatus: pb.uint32(1), exitedAt: pb.message(2, Timestamp) });
export type WaitResponse = MessageOf<typeof WaitResponse>;

export const StatsRequest = message(`${P}StatsRequest`, { id: pb.string(1) });
export type StatsRequest = MessageOf<typeof StatsRequest>;

export const StatsResponse = message(`${P}StatsResponse`, {
  /** Metrics as an Any; containerd 1.6 with cgroup v1 expects io.containerd.cgroups.v1.Metrics, v2 io.containerd.cgroups.v2.Metrics. */
  stats: pb.message(1, Any),
});
export type StatsResponse = MessageOf<typeof StatsResponse>;

export const ConnectRequest = message(`${P}ConnectRequest`, { id: pb.string(1) });
export type ConnectRequest = MessageOf<typeof ConnectRequest>;

export const ConnectResponse = message(`${P}ConnectResponse`, { shimPid: pb.uint32(1), taskPid: pb.uint32(2), version: pb.string(3) });
export type ConnectResponse = MessageOf<typeof ConnectResponse>;

export const ShutdownRequest = message(`${P}ShutdownRequest`, { id: pb.string(1), now: pb.bool(2) });
export type ShutdownRequest = MessageOf<typeof ShutdownRequest>;

export const PauseRequest = message(`${P}PauseRequest`, { id: pb.string(1) });
export type PauseRequest = MessageOf<typeof PauseRequest>;

export const ResumeRequest = message(`${P}ResumeRequest`, { id: pb.string(1) });
export type ResumeRequest = MessageOf<typeof ResumeRequest>;
