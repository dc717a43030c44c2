// Original file: proto/vrun/agent/v1/agent.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { CloseStdinRequest as _vrun_agent_v1_CloseStdinRequest, CloseStdinRequest__Output as _vrun_agent_v1_CloseStdinRequest__Output } from '../../../vrun/agent/v1/CloseStdinRequest.js';
import type { CloseStdinResponse as _vrun_agent_v1_CloseStdinResponse, CloseStdinResponse__Output as _vrun_agent_v1_CloseStdinResponse__Output } from '../../../vrun/agent/v1/CloseStdinResponse.js';
import type { ConfigureNetworkRequest as _vrun_agent_v1_ConfigureNetworkRequest, ConfigureNetworkRequest__Output as _vrun_agent_v1_ConfigureNetworkRequest__Output } from '../../../vrun/agent/v1/ConfigureNetworkRequest.js';
import type { ConfigureNetworkResponse as _vrun_agent_v1_ConfigureNetworkResponse, ConfigureNetworkResponse__Output as _vrun_agent_v1_ConfigureNetworkResponse__Output } from '../../../vrun/agent/v1/ConfigureNetworkResponse.js';
import type { CreateBusyboxRootfsRequest as _vrun_agent_v1_CreateBusyboxRootfsRequest, CreateBusyboxRootfsRequest__Output as _vrun_agent_v1_CreateBusyboxRootfsRequest__Output } from '../../../vrun/agent/v1/CreateBusyboxRootfsRequest.js';
import type { CreateBusyboxRootfsResponse as _vrun_agent_v1_CreateBusyboxRootfsResponse, CreateBusyboxRootfsResponse__Output as _vrun_agent_v1_CreateBusyboxRootfsResponse__Output } from '../../../vrun/agent/v1/CreateBusyboxRootfsResponse.js';
import type { CreateContainerRequest as _vrun_agent_v1_CreateContainerRequest, CreateContainerRequest__Output as _vrun_agent_v1_CreateContainerRequest__Output } from '../../../vrun/agent/v1/CreateContainerRequest.js';
import type { CreateContainerResponse as _vrun_agent_v1_CreateContainerResponse, CreateContainerResponse__Output as _vrun_agent_v1_CreateContainerResponse__Output } from '../../../vrun/agent/v1/CreateContainerResponse.js';
import type { ExecProcessRequest as _vrun_agent_v1_ExecProcessRequest, ExecProcessRequest__Output as _vrun_agent_v1_ExecProcessRequest__Output } from '../../../vrun/agent/v1/ExecProcessRequest.js';
import type { ExecProcessResponse as _vrun_agent_v1_ExecProcessResponse, ExecProcessResponse__Output as _vrun_agent_v1_ExecProcessResponse__Output } from '../../../vrun/agent/v1/ExecProcessResponse.js';
import type { GuestDetailsRequest as _vrun_agent_v1_GuestDetailsRequest, GuestDetailsRequest__Output as _vrun_agent_v1_GuestDetailsRequest__Output } from '../../../vrun/agent/v1/GuestDetailsRequest.js';
import type { GuestDetailsResponse as _vrun_agent_v1_GuestDetailsResponse, GuestDetailsResponse__Output as _vrun_agent_v1_GuestDetailsResponse__Output } from '../../../vrun/agent/v1/GuestDetailsResponse.js';
import type { HealthRequest as _vrun_agent_v1_HealthRequest, HealthRequest__Output as _vrun_agent_v1_HealthRequest__Output } from '../../../vrun/agent/v1/HealthRequest.js';
import type { HealthResponse as _vrun_agent_v1_HealthResponse, HealthResponse__Output as _vrun_agent_v1_HealthResponse__Output } from '../../../vrun/agent/v1/HealthResponse.js';
import type { ListProcessesRequest as _vrun_agent_v1_ListProcessesRequest, ListProcessesRequest__Output as _vrun_agent_v1_ListProcessesRequest__Output } from '../../../vrun/agent/v1/ListProcessesRequest.js';
import type { ListProcessesResponse as _vrun_agent_v1_ListProcessesResponse, ListProcessesResponse__Output as _vrun_agent_v1_ListProcessesResponse__Output } from '../../../vrun/agent/v1/ListProcessesResponse.js';
import type { MountShareRequest as _vrun_agent_v1_MountShareRequest, MountShareRequest__Output as _vrun_agent_v1_MountShareRequest__Output } from '../../../vrun/agent/v1/MountShareRequest.js';
import type { MountShareResponse as _vrun_agent_v1_MountShareResponse, MountShareResponse__Output as _vrun_agent_v1_MountShareResponse__Output } from '../../../vrun/agent/v1/MountShareResponse.js';
import type { OomEvent as _vrun_agent_v1_OomEvent, OomEvent__Output as _vrun_agent_v1_OomEvent__Output } from '../../../vrun/agent/v1/OomEvent.js';
import type { OomEventsRequest as _vrun_agent_v1_OomEventsRequest, OomEventsRequest__Output as _vrun_agent_v1_OomEventsRequest__Output } from '../../../vrun/agent/v1/OomEventsRequest.js';
import type { OutputChunk as _vrun_agent_v1_OutputChunk, OutputChunk__Output as _vrun_agent_v1_OutputChunk__Output } from '../../../vrun/agent/v1/OutputChunk.js';
import type { PauseContainerRequest as _vrun_agent_v1_PauseContainerRequest, PauseContainerRequest__Output as _vrun_agent_v1_PauseContainerRequest__Output } from '../../../vrun/agent/v1/PauseContainerRequest.js';
import type { PauseContainerResponse as _vrun_agent_v1_PauseContainerResponse, PauseContainerResponse__Output as _vrun_agent_v1_PauseContainerResponse__Output } from '../../../vrun/agent/v1/PauseContainerResponse.js';
import type { PortForwardRequest as _vrun_agent_v1_PortForwardRequest, PortForwardRequest__Output as _vrun_agent_v1_PortForwardRequest__Output } from '../../../vrun/agent/v1/PortForwardRequest.js';
import type { PortForwardResponse as _vrun_agent_v1_PortForwardResponse, PortForwardResponse__Output as _vrun_agent_v1_PortForwardResponse__Output } from '../../../vrun/agent/v1/PortForwardResponse.js';
import type { ReadOutputRequest as _vrun_agent_v1_ReadOutputRequest, ReadOutputRequest__Output as _vrun_agent_v1_ReadOutputRequest__Output } from '../../../vrun/agent/v1/ReadOutputRequest.js';
import type { RemoveContainerRequest as _vrun_agent_v1_RemoveContainerRequest, RemoveContainerRequest__Output as _vrun_agent_v1_RemoveContainerRequest__Output } from '../../../vrun/agent/v1/RemoveContainerRequest.js';
import type { RemoveContainerResponse as _vrun_agent_v1_RemoveContainerResponse, RemoveContainerResponse__Output as _vrun_agent_v1_RemoveContainerResponse__Output } from '../../../vrun/agent/v1/RemoveContainerResponse.js';
import type { ResizeTerminalRequest as _vrun_agent_v1_ResizeTerminalRequest, ResizeTerminalRequest__Output as _vrun_agent_v1_ResizeTerminalRequest__Output } from '../../../vrun/agent/v1/ResizeTerminalRequest.js';
import type { ResizeTerminalResponse as _vrun_agent_v1_ResizeTerminalResponse, ResizeTerminalResponse__Output as _vrun_agent_v1_ResizeTerminalResponse__Output } from '../../../vrun/agent/v1/ResizeTerminalResponse.js';
import type { ResumeContainerRequest as _vrun_agent_v1_ResumeContainerRequest, ResumeContainerRequest__Output as _vrun_agent_v1_ResumeContainerRequest__Output } from '../../../vrun/agent/v1/ResumeContainerRequest.js';
import type { ResumeContainerResponse as _vrun_agent_v1_ResumeContainerResponse, ResumeContainerResponse__Output as _vrun_agent_v1_ResumeContainerResponse__Output } from '../../../vrun/agent/v1/ResumeContainerResponse.js';
import type { SetDnsRequest as _vrun_agent_v1_SetDnsRequest, SetDnsRequest__Output as _vrun_agent_v1_SetDnsRequest__Output } from '../../../vrun/agent/v1/SetDnsRequest.js';
import type { SetDnsResponse as _vrun_agent_v1_SetDnsResponse, SetDnsResponse__Output as _vrun_agent_v1_SetDnsResponse__Output } from '../../../vrun/agent/v1/SetDnsResponse.js';
import type { SetHostnameRequest as _vrun_agent_v1_SetHostnameRequest, SetHostnameRequest__Output as _vrun_agent_v1_SetHostnameRequest__Output } from '../../../vrun/agent/v1/SetHostnameRequest.js';
import type { SetHostnameResponse as _vrun_agent_v1_SetHostnameResponse, SetHostnameResponse__Output as _vrun_agent_v1_SetHostnameResponse__Output } from '../../../vrun/agent/v1/SetHostnameResponse.js';
import type { SetHostsRequest as _vrun_agent_v1_SetHostsRequest, SetHostsRequest__Output as _vrun_agent_v1_SetHostsRequest__Output } from '../../../vrun/agent/v1/SetHostsRequest.js';
import type { SetHostsResponse as _vrun_agent_v1_SetHostsResponse, SetHostsResponse__Output as _vrun_agent_v1_SetHostsResponse__Output } from '../../../vrun/agent/v1/SetHostsResponse.js';
import type { SetSysctlsRequest as _vrun_agent_v1_SetSysctlsRequest, SetSysctlsRequest__Output as _vrun_agent_v1_SetSysctlsRequest__Output } from '../../../vrun/agent/v1/SetSysctlsRequest.js';
import type { SetSysctlsResponse as _vrun_agent_v1_SetSysctlsResponse, SetSysctlsResponse__Output as _vrun_agent_v1_SetSysctlsResponse__Output } from '../../../vrun/agent/v1/SetSysctlsResponse.js';
import type { ShutdownRequest as _vrun_agent_v1_ShutdownRequest, ShutdownRequest__Output as _vrun_agent_v1_ShutdownRequest__Output } from '../../../vrun/agent/v1/ShutdownRequest.js';
import type { ShutdownResponse as _vrun_agent_v1_ShutdownResponse, ShutdownResponse__Output as _vrun_agent_v1_ShutdownResponse__Output } from '../../../vrun/agent/v1/ShutdownResponse.js';
import type { SignalProcessRequest as _vrun_agent_v1_SignalProcessRequest, SignalProcessRequest__Output as _vrun_agent_v1_SignalProcessRequest__Output } from '../../../vrun/agent/v1/SignalProcessRequest.js';
import type { SignalProcessResponse as _vrun_agent_v1_SignalProcessResponse, SignalProcessResponse__Output as _vrun_agent_v1_SignalProcessResponse__Output } from '../../../vrun/agent/v1/SignalProcessResponse.js';
import type { StartContainerRequest as _vrun_agent_v1_StartContainerRequest, StartContainerRequest__Output as _vrun_agent_v1_StartContainerRequest__Output } from '../../../vrun/agent/v1/StartContainerRequest.js';
import type { StartContainerResponse as _vrun_agent_v1_StartContainerResponse, StartContainerResponse__Output as _vrun_agent_v1_StartContainerResponse__Output } from '../../../vrun/agent/v1/StartContainerResponse.js';
import type { StatsRequest as _vrun_agent_v1_StatsRequest, StatsRequest__Output as _vrun_agent_v1_StatsRequest__Output } from '../../../vrun/agent/v1/StatsRequest.js';
import type { StatsResponse as _vrun_agent_v1_StatsResponse, StatsResponse__Output as _vrun_agent_v1_StatsResponse__Output } from '../../../vrun/agent/v1/StatsResponse.js';
import type { UpdateResourcesRequest as _vrun_agent_v1_UpdateResourcesRequest, UpdateResourcesRequest__Output as _vrun_agent_v1_UpdateResourcesRequest__Output } from '../../../vrun/agent/v1/UpdateResourcesRequest.js';
import type { UpdateResourcesResponse as _vrun_agent_v1_UpdateResourcesResponse, UpdateResourcesResponse__Output as _vrun_agent_v1_UpdateResourcesResponse__Output } from '../../../vrun/agent/v1/UpdateResourcesResponse.js';
import type { WaitProcessRequest as _vrun_agent_v1_WaitProcessRequest, WaitProcessRequest__Output as _vrun_agent_v1_WaitProcessRequest__Output } from '../../../vrun/agent/v1/WaitProcessRequest.js';
import type { WaitProcessResponse as _vrun_agent_v1_WaitProcessResponse, WaitProcessResponse__Output as _vrun_agent_v1_WaitProcessResponse__Output } from '../../../vrun/agent/v1/WaitProcessResponse.js';
import type { WriteStdinRequest as _vrun_agent_v1_WriteStdinRequest, WriteStdinRequest__Output as _vrun_agent_v1_WriteStdinRequest__Output } from '../../../vrun/agent/v1/WriteStdinRequest.js';
import type { WriteStdinResponse as _vrun_agent_v1_WriteStdinResponse, WriteStdinResponse__Output as _vrun_agent_v1_WriteStdinResponse__Output } from '../../../vrun/agent/v1/WriteStdinResponse.js';

export interface AgentClient extends grpc.Client {
  CloseStdin(argument: _vrun_agent_v1_CloseStdinRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CloseStdinResponse__Output>): grpc.ClientUnaryCall;
  CloseStdin(argument: _vrun_agent_v1_CloseStdinRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_CloseStdinResponse__Output>): grpc.ClientUnaryCall;
  CloseStdin(argument: _vrun_agent_v1_CloseStdinRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CloseStdinResponse__Output>): grpc.ClientUnaryCall;
  CloseStdin(argument: _vrun_agent_v1_CloseStdinRequest, callback: grpc.requestCallback<_vrun_agent_v1_CloseStdinResponse__Output>): grpc.ClientUnaryCall;
  closeStdin(argument: _vrun_agent_v1_CloseStdinRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CloseStdinResponse__Output>): grpc.ClientUnaryCall;
  closeStdin(argument: _vrun_agent_v1_CloseStdinRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_CloseStdinResponse__Output>): grpc.ClientUnaryCall;
  closeStdin(argument: _vrun_agent_v1_CloseStdinRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CloseStdinResponse__Output>): grpc.ClientUnaryCall;
  closeStdin(argument: _vrun_agent_v1_CloseStdinRequest, callback: grpc.requestCallback<_vrun_agent_v1_CloseStdinResponse__Output>): grpc.ClientUnaryCall;
  
  ConfigureNetwork(argument: _vrun_agent_v1_ConfigureNetworkRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ConfigureNetworkResponse__Output>): grpc.ClientUnaryCall;
  ConfigureNetwork(argument: _vrun_agent_v1_ConfigureNetworkRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ConfigureNetworkResponse__Output>): grpc.ClientUnaryCall;
  ConfigureNetwork(argument: _vrun_agent_v1_ConfigureNetworkRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ConfigureNetworkResponse__Output>): grpc.ClientUnaryCall;
  ConfigureNetwork(argument: _vrun_agent_v1_ConfigureNetworkRequest, callback: grpc.requestCallback<_vrun_agent_v1_ConfigureNetworkResponse__Output>): grpc.ClientUnaryCall;
  configureNetwork(argument: _vrun_agent_v1_ConfigureNetworkRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ConfigureNetworkResponse__Output>): grpc.ClientUnaryCall;
  configureNetwork(argument: _vrun_agent_v1_ConfigureNetworkRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ConfigureNetworkResponse__Output>): grpc.ClientUnaryCall;
  configureNetwork(argument: _vrun_agent_v1_ConfigureNetworkRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ConfigureNetworkResponse__Output>): grpc.ClientUnaryCall;
  configureNetwork(argument: _vrun_agent_v1_ConfigureNetworkRequest, callback: grpc.requestCallback<_vrun_agent_v1_ConfigureNetworkResponse__Output>): grpc.ClientUnaryCall;
  
  CreateBusyboxRootfs(argument: _vrun_agent_v1_CreateBusyboxRootfsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CreateBusyboxRootfsResponse__Output>): grpc.ClientUnaryCall;
  CreateBusyboxRootfs(argument: _vrun_agent_v1_CreateBusyboxRootfsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_CreateBusyboxRootfsResponse__Output>): grpc.ClientUnaryCall;
  CreateBusyboxRootfs(argument: _vrun_agent_v1_CreateBusyboxRootfsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CreateBusyboxRootfsResponse__Output>): grpc.ClientUnaryCall;
  CreateBusyboxRootfs(argument: _vrun_agent_v1_CreateBusyboxRootfsRequest, callback: grpc.requestCallback<_vrun_agent_v1_CreateBusyboxRootfsResponse__Output>): grpc.ClientUnaryCall;
  createBusyboxRootfs(argument: _vrun_agent_v1_CreateBusyboxRootfsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CreateBusyboxRootfsResponse__Output>): grpc.ClientUnaryCall;
  createBusyboxRootfs(argument: _vrun_agent_v1_CreateBusyboxRootfsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_CreateBusyboxRootfsResponse__Output>): grpc.ClientUnaryCall;
  createBusyboxRootfs(argument: _vrun_agent_v1_CreateBusyboxRootfsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CreateBusyboxRootfsResponse__Output>): grpc.ClientUnaryCall;
  createBusyboxRootfs(argument: _vrun_agent_v1_CreateBusyboxRootfsRequest, callback: grpc.requestCallback<_vrun_agent_v1_CreateBusyboxRootfsResponse__Output>): grpc.ClientUnaryCall;
  
  CreateContainer(argument: _vrun_agent_v1_CreateContainerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CreateContainerResponse__Output>): grpc.ClientUnaryCall;
  CreateContainer(argument: _vrun_agent_v1_CreateContainerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_CreateContainerResponse__Output>): grpc.ClientUnaryCall;
  CreateContainer(argument: _vrun_agent_v1_CreateContainerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CreateContainerResponse__Output>): grpc.ClientUnaryCall;
  CreateContainer(argument: _vrun_agent_v1_CreateContainerRequest, callback: grpc.requestCallback<_vrun_agent_v1_CreateContainerResponse__Output>): grpc.ClientUnaryCall;
  createContainer(argument: _vrun_agent_v1_CreateContainerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CreateContainerResponse__Output>): grpc.ClientUnaryCall;
  createContainer(argument: _vrun_agent_v1_CreateContainerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_CreateContainerResponse__Output>): grpc.ClientUnaryCall;
  createContainer(argument: _vrun_agent_v1_CreateContainerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_CreateContainerResponse__Output>): grpc.ClientUnaryCall;
  createContainer(argument: _vrun_agent_v1_CreateContainerRequest, callback: grpc.requestCallback<_vrun_agent_v1_CreateContainerResponse__Output>): grpc.ClientUnaryCall;
  
  ExecProcess(argument: _vrun_agent_v1_ExecProcessRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ExecProcessResponse__Output>): grpc.ClientUnaryCall;
  ExecProcess(argument: _vrun_agent_v1_ExecProcessRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ExecProcessResponse__Output>): grpc.ClientUnaryCall;
  ExecProcess(argument: _vrun_agent_v1_ExecProcessRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ExecProcessResponse__Output>): grpc.ClientUnaryCall;
  ExecProcess(argument: _vrun_agent_v1_ExecProcessRequest, callback: grpc.requestCallback<_vrun_agent_v1_ExecProcessResponse__Output>): grpc.ClientUnaryCall;
  execProcess(argument: _vrun_agent_v1_ExecProcessRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ExecProcessResponse__Output>): grpc.ClientUnaryCall;
  execProcess(argument: _vrun_agent_v1_ExecProcessRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ExecProcessResponse__Output>): grpc.ClientUnaryCall;
  execProcess(argument: _vrun_agent_v1_ExecProcessRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ExecProcessResponse__Output>): grpc.ClientUnaryCall;
  execProcess(argument: _vrun_agent_v1_ExecProcessRequest, callback: grpc.requestCallback<_vrun_agent_v1_ExecProcessResponse__Output>): grpc.ClientUnaryCall;
  
  GuestDetails(argument: _vrun_agent_v1_GuestDetailsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_GuestDetailsResponse__Output>): grpc.ClientUnaryCall;
  GuestDetails(argument: _vrun_agent_v1_GuestDetailsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_GuestDetailsResponse__Output>): grpc.ClientUnaryCall;
  GuestDetails(argument: _vrun_agent_v1_GuestDetailsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_GuestDetailsResponse__Output>): grpc.ClientUnaryCall;
  GuestDetails(argument: _vrun_agent_v1_GuestDetailsRequest, callback: grpc.requestCallback<_vrun_agent_v1_GuestDetailsResponse__Output>): grpc.ClientUnaryCall;
  guestDetails(argument: _vrun_agent_v1_GuestDetailsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_GuestDetailsResponse__Output>): grpc.ClientUnaryCall;
  guestDetails(argument: _vrun_agent_v1_GuestDetailsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_GuestDetailsResponse__Output>): grpc.ClientUnaryCall;
  guestDetails(argument: _vrun_agent_v1_GuestDetailsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_GuestDetailsResponse__Output>): grpc.ClientUnaryCall;
  guestDetails(argument: _vrun_agent_v1_GuestDetailsRequest, callback: grpc.requestCallback<_vrun_agent_v1_GuestDetailsResponse__Output>): grpc.ClientUnaryCall;
  
  Health(argument: _vrun_agent_v1_HealthRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_HealthResponse__Output>): grpc.ClientUnaryCall;
  Health(argument: _vrun_agent_v1_HealthRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_HealthResponse__Output>): grpc.ClientUnaryCall;
  Health(argument: _vrun_agent_v1_HealthRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_HealthResponse__Output>): grpc.ClientUnaryCall;
  Health(argument: _vrun_agent_v1_HealthRequest, callback: grpc.requestCallback<_vrun_agent_v1_HealthResponse__Output>): grpc.ClientUnaryCall;
  health(argument: _vrun_agent_v1_HealthRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_HealthResponse__Output>): grpc.ClientUnaryCall;
  health(argument: _vrun_agent_v1_HealthRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_HealthResponse__Output>): grpc.ClientUnaryCall;
  health(argument: _vrun_agent_v1_HealthRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_HealthResponse__Output>): grpc.ClientUnaryCall;
  health(argument: _vrun_agent_v1_HealthRequest, callback: grpc.requestCallback<_vrun_agent_v1_HealthResponse__Output>): grpc.ClientUnaryCall;
  
  ListProcesses(argument: _vrun_agent_v1_ListProcessesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ListProcessesResponse__Output>): grpc.ClientUnaryCall;
  ListProcesses(argument: _vrun_agent_v1_ListProcessesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ListProcessesResponse__Output>): grpc.ClientUnaryCall;
  ListProcesses(argument: _vrun_agent_v1_ListProcessesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ListProcessesResponse__Output>): grpc.ClientUnaryCall;
  ListProcesses(argument: _vrun_agent_v1_ListProcessesRequest, callback: grpc.requestCallback<_vrun_agent_v1_ListProcessesResponse__Output>): grpc.ClientUnaryCall;
  listProcesses(argument: _vrun_agent_v1_ListProcessesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ListProcessesResponse__Output>): grpc.ClientUnaryCall;
  listProcesses(argument: _vrun_agent_v1_ListProcessesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ListProcessesResponse__Output>): grpc.ClientUnaryCall;
  listProcesses(argument: _vrun_agent_v1_ListProcessesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ListProcessesResponse__Output>): grpc.ClientUnaryCall;
  listProcesses(argument: _vrun_agent_v1_ListProcessesRequest, callback: grpc.requestCallback<_vrun_agent_v1_ListProcessesResponse__Output>): grpc.ClientUnaryCall;
  
  MountShare(argument: _vrun_agent_v1_MountShareRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_MountShareResponse__Output>): grpc.ClientUnaryCall;
  MountShare(argument: _vrun_agent_v1_MountShareRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_MountShareResponse__Output>): grpc.ClientUnaryCall;
  MountShare(argument: _vrun_agent_v1_MountShareRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_MountShareResponse__Output>): grpc.ClientUnaryCall;
  MountShare(argument: _vrun_agent_v1_MountShareRequest, callback: grpc.requestCallback<_vrun_agent_v1_MountShareResponse__Output>): grpc.ClientUnaryCall;
  mountShare(argument: _vrun_agent_v1_MountShareRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_MountShareResponse__Output>): grpc.ClientUnaryCall;
  mountShare(argument: _vrun_agent_v1_MountShareRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_MountShareResponse__Output>): grpc.ClientUnaryCall;
  mountShare(argument: _vrun_agent_v1_MountShareRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_MountShareResponse__Output>): grpc.ClientUnaryCall;
  mountShare(argument: _vrun_agent_v1_MountShareRequest, callback: grpc.requestCallback<_vrun_agent_v1_MountShareResponse__Output>): grpc.ClientUnaryCall;
  
  OomEvents(argument: _vrun_agent_v1_OomEventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OomEvent__Output>;
  OomEvents(argument: _vrun_agent_v1_OomEventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OomEvent__Output>;
  oomEvents(argument: _vrun_agent_v1_OomEventsRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OomEvent__Output>;
  oomEvents(argument: _vrun_agent_v1_OomEventsRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OomEvent__Output>;
  
  PauseContainer(argument: _vrun_agent_v1_PauseContainerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_PauseContainerResponse__Output>): grpc.ClientUnaryCall;
  PauseContainer(argument: _vrun_agent_v1_PauseContainerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_PauseContainerResponse__Output>): grpc.ClientUnaryCall;
  PauseContainer(argument: _vrun_agent_v1_PauseContainerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_PauseContainerResponse__Output>): grpc.ClientUnaryCall;
  PauseContainer(argument: _vrun_agent_v1_PauseContainerRequest, callback: grpc.requestCallback<_vrun_agent_v1_PauseContainerResponse__Output>): grpc.ClientUnaryCall;
  pauseContainer(argument: _vrun_agent_v1_PauseContainerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_PauseContainerResponse__Output>): grpc.ClientUnaryCall;
  pauseContainer(argument: _vrun_agent_v1_PauseContainerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_PauseContainerResponse__Output>): grpc.ClientUnaryCall;
  pauseContainer(argument: _vrun_agent_v1_PauseContainerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_PauseContainerResponse__Output>): grpc.ClientUnaryCall;
  pauseContainer(argument: _vrun_agent_v1_PauseContainerRequest, callback: grpc.requestCallback<_vrun_agent_v1_PauseContainerResponse__Output>): grpc.ClientUnaryCall;
  
  PortForward(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_vrun_agent_v1_PortForwardRequest, _vrun_agent_v1_PortForwardResponse__Output>;
  PortForward(options?: grpc.CallOptions): grpc.ClientDuplexStream<_vrun_agent_v1_PortForwardRequest, _vrun_agent_v1_PortForwardResponse__Output>;
  portForward(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_vrun_agent_v1_PortForwardRequest, _vrun_agent_v1_PortForwardResponse__Output>;
  portForward(options?: grpc.CallOptions): grpc.ClientDuplexStream<_vrun_agent_v1_PortForwardRequest, _vrun_agent_v1_PortForwardResponse__Output>;
  
  ReadStderr(argument: _vrun_agent_v1_ReadOutputRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OutputChunk__Output>;
  ReadStderr(argument: _vrun_agent_v1_ReadOutputRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OutputChunk__Output>;
  readStderr(argument: _vrun_agent_v1_ReadOutputRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OutputChunk__Output>;
  readStderr(argument: _vrun_agent_v1_ReadOutputRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OutputChunk__Output>;
  
  ReadStdout(argument: _vrun_agent_v1_ReadOutputRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OutputChunk__Output>;
  ReadStdout(argument: _vrun_agent_v1_ReadOutputRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OutputChunk__Output>;
  readStdout(argument: _vrun_agent_v1_ReadOutputRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OutputChunk__Output>;
  readStdout(argument: _vrun_agent_v1_ReadOutputRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_vrun_agent_v1_OutputChunk__Output>;
  
  RemoveContainer(argument: _vrun_agent_v1_RemoveContainerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_RemoveContainerResponse__Output>): grpc.ClientUnaryCall;
  RemoveContainer(argument: _vrun_agent_v1_RemoveContainerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_RemoveContainerResponse__Output>): grpc.ClientUnaryCall;
  RemoveContainer(argument: _vrun_agent_v1_RemoveContainerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_RemoveContainerResponse__Output>): grpc.ClientUnaryCall;
  RemoveContainer(argument: _vrun_agent_v1_RemoveContainerRequest, callback: grpc.requestCallback<_vrun_agent_v1_RemoveContainerResponse__Output>): grpc.ClientUnaryCall;
  removeContainer(argument: _vrun_agent_v1_RemoveContainerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_RemoveContainerResponse__Output>): grpc.ClientUnaryCall;
  removeContainer(argument: _vrun_agent_v1_RemoveContainerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_RemoveContainerResponse__Output>): grpc.ClientUnaryCall;
  removeContainer(argument: _vrun_agent_v1_RemoveContainerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_RemoveContainerResponse__Output>): grpc.ClientUnaryCall;
  removeContainer(argument: _vrun_agent_v1_RemoveContainerRequest, callback: grpc.requestCallback<_vrun_agent_v1_RemoveContainerResponse__Output>): grpc.ClientUnaryCall;
  
  ResizeTerminal(argument: _vrun_agent_v1_ResizeTerminalRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ResizeTerminalResponse__Output>): grpc.ClientUnaryCall;
  ResizeTerminal(argument: _vrun_agent_v1_ResizeTerminalRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ResizeTerminalResponse__Output>): grpc.ClientUnaryCall;
  ResizeTerminal(argument: _vrun_agent_v1_ResizeTerminalRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ResizeTerminalResponse__Output>): grpc.ClientUnaryCall;
  ResizeTerminal(argument: _vrun_agent_v1_ResizeTerminalRequest, callback: grpc.requestCallback<_vrun_agent_v1_ResizeTerminalResponse__Output>): grpc.ClientUnaryCall;
  resizeTerminal(argument: _vrun_agent_v1_ResizeTerminalRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ResizeTerminalResponse__Output>): grpc.ClientUnaryCall;
  resizeTerminal(argument: _vrun_agent_v1_ResizeTerminalRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ResizeTerminalResponse__Output>): grpc.ClientUnaryCall;
  resizeTerminal(argument: _vrun_agent_v1_ResizeTerminalRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ResizeTerminalResponse__Output>): grpc.ClientUnaryCall;
  resizeTerminal(argument: _vrun_agent_v1_ResizeTerminalRequest, callback: grpc.requestCallback<_vrun_agent_v1_ResizeTerminalResponse__Output>): grpc.ClientUnaryCall;
  
  ResumeContainer(argument: _vrun_agent_v1_ResumeContainerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ResumeContainerResponse__Output>): grpc.ClientUnaryCall;
  ResumeContainer(argument: _vrun_agent_v1_ResumeContainerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ResumeContainerResponse__Output>): grpc.ClientUnaryCall;
  ResumeContainer(argument: _vrun_agent_v1_ResumeContainerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ResumeContainerResponse__Output>): grpc.ClientUnaryCall;
  ResumeContainer(argument: _vrun_agent_v1_ResumeContainerRequest, callback: grpc.requestCallback<_vrun_agent_v1_ResumeContainerResponse__Output>): grpc.ClientUnaryCall;
  resumeContainer(argument: _vrun_agent_v1_ResumeContainerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ResumeContainerResponse__Output>): grpc.ClientUnaryCall;
  resumeContainer(argument: _vrun_agent_v1_ResumeContainerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ResumeContainerResponse__Output>): grpc.ClientUnaryCall;
  resumeContainer(argument: _vrun_agent_v1_ResumeContainerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ResumeContainerResponse__Output>): grpc.ClientUnaryCall;
  resumeContainer(argument: _vrun_agent_v1_ResumeContainerRequest, callback: grpc.requestCallback<_vrun_agent_v1_ResumeContainerResponse__Output>): grpc.ClientUnaryCall;
  
  SetDns(argument: _vrun_agent_v1_SetDnsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetDnsResponse__Output>): grpc.ClientUnaryCall;
  SetDns(argument: _vrun_agent_v1_SetDnsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_SetDnsResponse__Output>): grpc.ClientUnaryCall;
  SetDns(argument: _vrun_agent_v1_SetDnsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetDnsResponse__Output>): grpc.ClientUnaryCall;
  SetDns(argument: _vrun_agent_v1_SetDnsRequest, callback: grpc.requestCallback<_vrun_agent_v1_SetDnsResponse__Output>): grpc.ClientUnaryCall;
  setDns(argument: _vrun_agent_v1_SetDnsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetDnsResponse__Output>): grpc.ClientUnaryCall;
  setDns(argument: _vrun_agent_v1_SetDnsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_SetDnsResponse__Output>): grpc.ClientUnaryCall;
  setDns(argument: _vrun_agent_v1_SetDnsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetDnsResponse__Output>): grpc.ClientUnaryCall;
  setDns(argument: _vrun_agent_v1_SetDnsRequest, callback: grpc.requestCallback<_vrun_agent_v1_SetDnsResponse__Output>): grpc.ClientUnaryCall;
  
  SetHostname(argument: _vrun_agent_v1_SetHostnameRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetHostnameResponse__Output>): grpc.ClientUnaryCall;
  SetHostname(argument: _vrun_agent_v1_SetHostnameRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_SetHostnameResponse__Output>): grpc.ClientUnaryCall;
  SetHostname(argument: _vrun_agent_v1_SetHostnameRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetHostnameResponse__Output>): grpc.ClientUnaryCall;
  SetHostname(argument: _vrun_agent_v1_SetHostnameRequest, callback: grpc.requestCallback<_vrun_agent_v1_SetHostnameResponse__Output>): grpc.ClientUnaryCall;
  setHostname(argument: _vrun_agent_v1_SetHostnameRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetHostnameResponse__Output>): grpc.ClientUnaryCall;
  setHostname(argument: _vrun_agent_v1_SetHostnameRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_SetHostnameResponse__Output>): grpc.ClientUnaryCall;
  setHostname(argument: _vrun_agent_v1_SetHostnameRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetHostnameResponse__Output>): grpc.ClientUnaryCall;
  setHostname(argument: _vrun_agent_v1_SetHostnameRequest, callback: grpc.requestCallback<_vrun_agent_v1_SetHostnameResponse__Output>): grpc.ClientUnaryCall;
  
  SetHosts(argument: _vrun_agent_v1_SetHostsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetHostsResponse__Output>): grpc.ClientUnaryCall;
  SetHosts(argument: _vrun_agent_v1_SetHostsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_SetHostsResponse__Output>): grpc.ClientUnaryCall;
  SetHosts(argument: _vrun_agent_v1_SetHostsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetHostsResponse__Output>): grpc.ClientUnaryCall;
  SetHosts(argument: _vrun_agent_v1_SetHostsRequest, callback: grpc.requestCallback<_vrun_agent_v1_SetHostsResponse__Output>): grpc.ClientUnaryCall;
  setHosts(argument: _vrun_agent_v1_SetHostsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetHostsResponse__Output>): grpc.ClientUnaryCall;
  setHosts(argument: _vrun_agent_v1_SetHostsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_SetHostsResponse__Output>): grpc.ClientUnaryCall;
  setHosts(argument: _vrun_agent_v1_SetHostsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetHostsResponse__Output>): grpc.ClientUnaryCall;
  setHosts(argument: _vrun_agent_v1_SetHostsRequest, callback: grpc.requestCallback<_vrun_agent_v1_SetHostsResponse__Output>): grpc.ClientUnaryCall;
  
  SetSysctls(argument: _vrun_agent_v1_SetSysctlsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetSysctlsResponse__Output>): grpc.ClientUnaryCall;
  SetSysctls(argument: _vrun_agent_v1_SetSysctlsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_SetSysctlsResponse__Output>): grpc.ClientUnaryCall;
  SetSysctls(argument: _vrun_agent_v1_SetSysctlsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetSysctlsResponse__Output>): grpc.ClientUnaryCall;
  SetSysctls(argument: _vrun_agent_v1_SetSysctlsRequest, callback: grpc.requestCallback<_vrun_agent_v1_SetSysctlsResponse__Output>): grpc.ClientUnaryCall;
  setSysctls(argument: _vrun_agent_v1_SetSysctlsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetSysctlsResponse__Output>): grpc.ClientUnaryCall;
  setSysctls(argument: _vrun_agent_v1_SetSysctlsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_SetSysctlsResponse__Output>): grpc.ClientUnaryCall;
  setSysctls(argument: _vrun_agent_v1_SetSysctlsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SetSysctlsResponse__Output>): grpc.ClientUnaryCall;
  setSysctls(argument: _vrun_agent_v1_SetSysctlsRequest, callback: grpc.requestCallback<_vrun_agent_v1_SetSysctlsResponse__Output>): grpc.ClientUnaryCall;
  
  Shutdown(argument: _vrun_agent_v1_ShutdownRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ShutdownResponse__Output>): grpc.ClientUnaryCall;
  Shutdown(argument: _vrun_agent_v1_ShutdownRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ShutdownResponse__Output>): grpc.ClientUnaryCall;
  Shutdown(argument: _vrun_agent_v1_ShutdownRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ShutdownResponse__Output>): grpc.ClientUnaryCall;
  Shutdown(argument: _vrun_agent_v1_ShutdownRequest, callback: grpc.requestCallback<_vrun_agent_v1_ShutdownResponse__Output>): grpc.ClientUnaryCall;
  shutdown(argument: _vrun_agent_v1_ShutdownRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ShutdownResponse__Output>): grpc.ClientUnaryCall;
  shutdown(argument: _vrun_agent_v1_ShutdownRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_ShutdownResponse__Output>): grpc.ClientUnaryCall;
  shutdown(argument: _vrun_agent_v1_ShutdownRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_ShutdownResponse__Output>): grpc.ClientUnaryCall;
  shutdown(argument: _vrun_agent_v1_ShutdownRequest, callback: grpc.requestCallback<_vrun_agent_v1_ShutdownResponse__Output>): grpc.ClientUnaryCall;
  
  SignalProcess(argument: _vrun_agent_v1_SignalProcessRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SignalProcessResponse__Output>): grpc.ClientUnaryCall;
  SignalProcess(argument: _vrun_agent_v1_SignalProcessRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_SignalProcessResponse__Output>): grpc.ClientUnaryCall;
  SignalProcess(argument: _vrun_agent_v1_SignalProcessRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SignalProcessResponse__Output>): grpc.ClientUnaryCall;
  SignalProcess(argument: _vrun_agent_v1_SignalProcessRequest, callback: grpc.requestCallback<_vrun_agent_v1_SignalProcessResponse__Output>): grpc.ClientUnaryCall;
  signalProcess(argument: _vrun_agent_v1_SignalProcessRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SignalProcessResponse__Output>): grpc.ClientUnaryCall;
  signalProcess(argument: _vrun_agent_v1_SignalProcessRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_SignalProcessResponse__Output>): grpc.ClientUnaryCall;
  signalProcess(argument: _vrun_agent_v1_SignalProcessRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_SignalProcessResponse__Output>): grpc.ClientUnaryCall;
  signalProcess(argument: _vrun_agent_v1_SignalProcessRequest, callback: grpc.requestCallback<_vrun_agent_v1_SignalProcessResponse__Output>): grpc.ClientUnaryCall;
  
  StartContainer(argument: _vrun_agent_v1_StartContainerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_StartContainerResponse__Output>): grpc.ClientUnaryCall;
  StartContainer(argument: _vrun_agent_v1_StartContainerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_StartContainerResponse__Output>): grpc.ClientUnaryCall;
  StartContainer(argument: _vrun_agent_v1_StartContainerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_StartContainerResponse__Output>): grpc.ClientUnaryCall;
  StartContainer(argument: _vrun_agent_v1_StartContainerRequest, callback: grpc.requestCallback<_vrun_agent_v1_StartContainerResponse__Output>): grpc.ClientUnaryCall;
  startContainer(argument: _vrun_agent_v1_StartContainerRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_StartContainerResponse__Output>): grpc.ClientUnaryCall;
  startContainer(argument: _vrun_agent_v1_StartContainerRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_StartContainerResponse__Output>): grpc.ClientUnaryCall;
  startContainer(argument: _vrun_agent_v1_StartContainerRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_StartContainerResponse__Output>): grpc.ClientUnaryCall;
  startContainer(argument: _vrun_agent_v1_StartContainerRequest, callback: grpc.requestCallback<_vrun_agent_v1_StartContainerResponse__Output>): grpc.ClientUnaryCall;
  
  Stats(argument: _vrun_agent_v1_StatsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  Stats(argument: _vrun_agent_v1_StatsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  Stats(argument: _vrun_agent_v1_StatsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  Stats(argument: _vrun_agent_v1_StatsRequest, callback: grpc.requestCallback<_vrun_agent_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  stats(argument: _vrun_agent_v1_StatsRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  stats(argument: _vrun_agent_v1_StatsRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  stats(argument: _vrun_agent_v1_StatsRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  stats(argument: _vrun_agent_v1_StatsRequest, callback: grpc.requestCallback<_vrun_agent_v1_StatsResponse__Output>): grpc.ClientUnaryCall;
  
  UpdateResources(argument: _vrun_agent_v1_UpdateResourcesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_UpdateResourcesResponse__Output>): grpc.ClientUnaryCall;
  UpdateResources(argument: _vrun_agent_v1_UpdateResourcesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_UpdateResourcesResponse__Output>): grpc.ClientUnaryCall;
  UpdateResources(argument: _vrun_agent_v1_UpdateResourcesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_UpdateResourcesResponse__Output>): grpc.ClientUnaryCall;
  UpdateResources(argument: _vrun_agent_v1_UpdateResourcesRequest, callback: grpc.requestCallback<_vrun_agent_v1_UpdateResourcesResponse__Output>): grpc.ClientUnaryCall;
  updateResources(argument: _vrun_agent_v1_UpdateResourcesRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_UpdateResourcesResponse__Output>): grpc.ClientUnaryCall;
  updateResources(argument: _vrun_agent_v1_UpdateResourcesRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_UpdateResourcesResponse__Output>): grpc.ClientUnaryCall;
  updateResources(argument: _vrun_agent_v1_UpdateResourcesRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_UpdateResourcesResponse__Output>): grpc.ClientUnaryCall;
  updateResources(argument: _vrun_agent_v1_UpdateResourcesRequest, callback: grpc.requestCallback<_vrun_agent_v1_UpdateResourcesResponse__Output>): grpc.ClientUnaryCall;
  
  WaitProcess(argument: _vrun_agent_v1_WaitProcessRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_WaitProcessResponse__Output>): grpc.ClientUnaryCall;
  WaitProcess(argument: _vrun_agent_v1_WaitProcessRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_WaitProcessResponse__Output>): grpc.ClientUnaryCall;
  WaitProcess(argument: _vrun_agent_v1_WaitProcessRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_WaitProcessResponse__Output>): grpc.ClientUnaryCall;
  WaitProcess(argument: _vrun_agent_v1_WaitProcessRequest, callback: grpc.requestCallback<_vrun_agent_v1_WaitProcessResponse__Output>): grpc.ClientUnaryCall;
  waitProcess(argument: _vrun_agent_v1_WaitProcessRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_WaitProcessResponse__Output>): grpc.ClientUnaryCall;
  waitProcess(argument: _vrun_agent_v1_WaitProcessRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_WaitProcessResponse__Output>): grpc.ClientUnaryCall;
  waitProcess(argument: _vrun_agent_v1_WaitProcessRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_WaitProcessResponse__Output>): grpc.ClientUnaryCall;
  waitProcess(argument: _vrun_agent_v1_WaitProcessRequest, callback: grpc.requestCallback<_vrun_agent_v1_WaitProcessResponse__Output>): grpc.ClientUnaryCall;
  
  WriteStdin(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_WriteStdinResponse__Output>): grpc.ClientWritableStream<_vrun_agent_v1_WriteStdinRequest>;
  WriteStdin(metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_WriteStdinResponse__Output>): grpc.ClientWritableStream<_vrun_agent_v1_WriteStdinRequest>;
  WriteStdin(options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_WriteStdinResponse__Output>): grpc.ClientWritableStream<_vrun_agent_v1_WriteStdinRequest>;
  WriteStdin(callback: grpc.requestCallback<_vrun_agent_v1_WriteStdinResponse__Output>): grpc.ClientWritableStream<_vrun_agent_v1_WriteStdinRequest>;
  writeStdin(metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_WriteStdinResponse__Output>): grpc.ClientWritableStream<_vrun_agent_v1_WriteStdinRequest>;
  writeStdin(metadata: grpc.Metadata, callback: grpc.requestCallback<_vrun_agent_v1_WriteStdinResponse__Output>): grpc.ClientWritableStream<_vrun_agent_v1_WriteStdinRequest>;
  writeStdin(options: grpc.CallOptions, callback: grpc.requestCallback<_vrun_agent_v1_WriteStdinResponse__Output>): grpc.ClientWritableStream<_vrun_agent_v1_WriteStdinRequest>;
  writeStdin(callback: grpc.requestCallback<_vrun_agent_v1_WriteStdinResponse__Output>): grpc.ClientWritableStream<_vrun_agent_v1_WriteStdinRequest>;
  
}

export interface AgentHandlers extends grpc.UntypedServiceImplementation {
  CloseStdin: grpc.handleUnaryCall<_vrun_agent_v1_CloseStdinRequest__Output, _vrun_agent_v1_CloseStdinResponse>;
  
  ConfigureNetwork: grpc.handleUnaryCall<_vrun_agent_v1_ConfigureNetworkRequest__Output, _vrun_agent_v1_ConfigureNetworkResponse>;
  
  CreateBusyboxRootfs: grpc.handleUnaryCall<_vrun_agent_v1_CreateBusyboxRootfsRequest__Output, _vrun_agent_v1_CreateBusyboxRootfsResponse>;
  
  CreateContainer: grpc.handleUnaryCall<_vrun_agent_v1_CreateContainerRequest__Output, _vrun_agent_v1_CreateContainerResponse>;
  
  ExecProcess: grpc.handleUnaryCall<_vrun_agent_v1_ExecProcessRequest__Output, _vrun_agent_v1_ExecProcessResponse>;
  
  GuestDetails: grpc.handleUnaryCall<_vrun_agent_v1_GuestDetailsRequest__Output, _vrun_agent_v1_GuestDetailsResponse>;
  
  Health: grpc.handleUnaryCall<_vrun_agent_v1_HealthRequest__Output, _vrun_agent_v1_HealthResponse>;
  
  ListProcesses: grpc.handleUnaryCall<_vrun_agent_v1_ListProcessesRequest__Output, _vrun_agent_v1_ListProcessesResponse>;
  
  MountShare: grpc.handleUnaryCall<_vrun_agent_v1_MountShareRequest__Output, _vrun_agent_v1_MountShareResponse>;
  
  OomEvents: grpc.handleServerStreamingCall<_vrun_agent_v1_OomEventsRequest__Output, _vrun_agent_v1_OomEvent>;
  
  PauseContainer: grpc.handleUnaryCall<_vrun_agent_v1_PauseContainerRequest__Output, _vrun_agent_v1_PauseContainerResponse>;
  
  PortForward: grpc.handleBidiStreamingCall<_vrun_agent_v1_PortForwardRequest__Output, _vrun_agent_v1_PortForwardResponse>;
  
  ReadStderr: grpc.handleServerStreamingCall<_vrun_agent_v1_ReadOutputRequest__Output, _vrun_agent_v1_OutputChunk>;
  
  ReadStdout: grpc.handleServerStreamingCall<_vrun_agent_v1_ReadOutputRequest__Output, _vrun_agent_v1_OutputChunk>;
  
  RemoveContainer: grpc.handleUnaryCall<_vrun_agent_v1_RemoveContainerRequest__Output, _vrun_agent_v1_RemoveContainerResponse>;
  
  ResizeTerminal: grpc.handleUnaryCall<_vrun_agent_v1_ResizeTerminalRequest__Output, _vrun_agent_v1_ResizeTerminalResponse>;
  
  ResumeContainer: grpc.handleUnaryCall<_vrun_agent_v1_ResumeContainerRequest__Output, _vrun_agent_v1_ResumeContainerResponse>;
  
  SetDns: grpc.handleUnaryCall<_vrun_agent_v1_SetDnsRequest__Output, _vrun_agent_v1_SetDnsResponse>;
  
  SetHostname: grpc.handleUnaryCall<_vrun_agent_v1_SetHostnameRequest__Output, _vrun_agent_v1_SetHostnameResponse>;
  
  SetHosts: grpc.handleUnaryCall<_vrun_agent_v1_SetHostsRequest__Output, _vrun_agent_v1_SetHostsResponse>;
  
  SetSysctls: grpc.handleUnaryCall<_vrun_agent_v1_SetSysctlsRequest__Output, _vrun_agent_v1_SetSysctlsResponse>;
  
  Shutdown: grpc.handleUnaryCall<_vrun_agent_v1_ShutdownRequest__Output, _vrun_agent_v1_ShutdownResponse>;
  
  SignalProcess: grpc.handleUnaryCall<_vrun_agent_v1_SignalProcessRequest__Output, _vrun_agent_v1_SignalProcessResponse>;
  
  StartContainer: grpc.handleUnaryCall<_vrun_agent_v1_StartContainerRequest__Output, _vrun_agent_v1_StartContainerResponse>;
  
  Stats: grpc.handleUnaryCall<_vrun_agent_v1_StatsRequest__Output, _vrun_agent_v1_StatsResponse>;
  
  UpdateResources: grpc.handleUnaryCall<_vrun_agent_v1_UpdateResourcesRequest__Output, _vrun_agent_v1_UpdateResourcesResponse>;
  
  WaitProcess: grpc.handleUnaryCall<_vrun_agent_v1_WaitProcessRequest__Output, _vrun_agent_v1_WaitProcessResponse>;
  
  WriteStdin: grpc.handleClientStreamingCall<_vrun_agent_v1_WriteStdinRequest__Output, _vrun_agent_v1_WriteStdinResponse>;
  
}

export interface AgentDefinition extends grpc.ServiceDefinition {
  CloseStdin: MethodDefinition<_vrun_agent_v1_CloseStdinRequest, _vrun_agent_v1_CloseStdinResponse, _vrun_agent_v1_CloseStdinRequest__Output, _vrun_agent_v1_CloseStdinResponse__Output>
  ConfigureNetwork: MethodDefinition<_vrun_agent_v1_ConfigureNetworkRequest, _vrun_agent_v1_ConfigureNetworkResponse, _vrun_agent_v1_ConfigureNetworkRequest__Output, _vrun_agent_v1_ConfigureNetworkResponse__Output>
  CreateBusyboxRootfs: MethodDefinition<_vrun_agent_v1_CreateBusyboxRootfsRequest, _vrun_agent_v1_CreateBusyboxRootfsResponse, _vrun_agent_v1_CreateBusyboxRootfsRequest__Output, _vrun_agent_v1_CreateBusyboxRootfsResponse__Output>
  CreateContainer: MethodDefinition<_vrun_agent_v1_CreateContainerRequest, _vrun_agent_v1_CreateContainerResponse, _vrun_agent_v1_CreateContainerRequest__Output, _vrun_agent_v1_CreateContainerResponse__Output>
  ExecProcess: MethodDefinition<_vrun_agent_v1_ExecProcessRequest, _vrun_agent_v1_ExecProcessResponse, _vrun_agent_v1_ExecProcessRequest__Output, _vrun_agent_v1_ExecProcessResponse__Output>
  GuestDetails: MethodDefinition<_vrun_agent_v1_GuestDetailsRequest, _vrun_agent_v1_GuestDetailsResponse, _vrun_agent_v1_GuestDetailsRequest__Output, _vrun_agent_v1_GuestDetailsResponse__Output>
  Health: MethodDefinition<_vrun_agent_v1_HealthRequest, _vrun_agent_v1_HealthResponse, _vrun_agent_v1_HealthRequest__Output, _vrun_agent_v1_HealthResponse__Output>
  ListProcesses: MethodDefinition<_vrun_agent_v1_ListProcessesRequest, _vrun_agent_v1_ListProcessesResponse, _vrun_agent_v1_ListProcessesRequest__Output, _vrun_agent_v1_ListProcessesResponse__Output>
  MountShare: MethodDefinition<_vrun_agent_v1_MountShareRequest, _vrun_agent_v1_MountShareResponse, _vrun_agent_v1_MountShareRequest__Output, _vrun_agent_v1_MountShareResponse__Output>
  OomEvents: MethodDefinition<_vrun_agent_v1_OomEventsRequest, _vrun_agent_v1_OomEvent, _vrun_agent_v1_OomEventsRequest__Output, _vrun_agent_v1_OomEvent__Output>
  PauseContainer: MethodDefinition<_vrun_agent_v1_PauseContainerRequest, _vrun_agent_v1_PauseContainerResponse, _vrun_agent_v1_PauseContainerRequest__Output, _vrun_agent_v1_PauseContainerResponse__Output>
  PortForward: MethodDefinition<_vrun_agent_v1_PortForwardRequest, _vrun_agent_v1_PortForwardResponse, _vrun_agent_v1_PortForwardRequest__Output, _vrun_agent_v1_PortForwardResponse__Output>
  ReadStderr: MethodDefinition<_vrun_agent_v1_ReadOutputRequest, _vrun_agent_v1_OutputChunk, _vrun_agent_v1_ReadOutputRequest__Output, _vrun_agent_v1_OutputChunk__Output>
  ReadStdout: MethodDefinition<_vrun_agent_v1_ReadOutputRequest, _vrun_agent_v1_OutputChunk, _vrun_agent_v1_ReadOutputRequest__Output, _vrun_agent_v1_OutputChunk__Output>
  RemoveContainer: MethodDefinition<_vrun_agent_v1_RemoveContainerRequest, _vrun_agent_v1_RemoveContainerResponse, _vrun_agent_v1_RemoveContainerRequest__Output, _vrun_agent_v1_RemoveContainerResponse__Output>
  ResizeTerminal: MethodDefinition<_vrun_agent_v1_ResizeTerminalRequest, _vrun_agent_v1_ResizeTerminalResponse, _vrun_agent_v1_ResizeTerminalRequest__Output, _vrun_agent_v1_ResizeTerminalResponse__Output>
  ResumeContainer: MethodDefinition<_vrun_agent_v1_ResumeContainerRequest, _vrun_agent_v1_ResumeContainerResponse, _vrun_agent_v1_ResumeContainerRequest__Output, _vrun_agent_v1_ResumeContainerResponse__Output>
  SetDns: MethodDefinition<_vrun_agent_v1_SetDnsRequest, _vrun_agent_v1_SetDnsResponse, _vrun_agent_v1_SetDnsRequest__Output, _vrun_agent_v1_SetDnsResponse__Output>
  SetHostname: MethodDefinition<_vrun_agent_v1_SetHostnameRequest, _vrun_agent_v1_SetHostnameResponse, _vrun_agent_v1_SetHostnameRequest__Output, _vrun_agent_v1_SetHostnameResponse__Output>
  SetHosts: MethodDefinition<_vrun_agent_v1_SetHostsRequest, _vrun_agent_v1_SetHostsResponse, _vrun_agent_v1_SetHostsRequest__Output, _vrun_agent_v1_SetHostsResponse__Output>
  SetSysctls: MethodDefinition<_vrun_agent_v1_SetSysctlsRequest, _vrun_agent_v1_SetSysctlsResponse, _vrun_agent_v1_SetSysctlsRequest__Output, _vrun_agent_v1_SetSysctlsResponse__Output>
  Shutdown: MethodDefinition<_vrun_agent_v1_ShutdownRequest, _vrun_agent_v1_ShutdownResponse, _vrun_agent_v1_ShutdownRequest__Output, _vrun_agent_v1_ShutdownResponse__Output>
  SignalProcess: MethodDefinition<_vrun_agent_v1_SignalProcessRequest, _vrun_agent_v1_SignalProcessResponse, _vrun_agent_v1_SignalProcessRequest__Output, _vrun_agent_v1_SignalProcessResponse__Output>
  StartContainer: MethodDefinition<_vrun_agent_v1_StartContainerRequest, _vrun_agent_v1_StartContainerResponse, _vrun_agent_v1_StartContainerRequest__Output, _vrun_agent_v1_StartContainerResponse__Output>
  Stats: MethodDefinition<_vrun_agent_v1_StatsRequest, _vrun_agent_v1_StatsResponse, _vrun_agent_v1_StatsRequest__Output, _vrun_agent_v1_StatsResponse__Output>
  UpdateResources: MethodDefinition<_vrun_agent_v1_UpdateResourcesRequest, _vrun_agent_v1_UpdateResourcesResponse, _vrun_agent_v1_UpdateResourcesRequest__Output, _vrun_agent_v1_UpdateResourcesResponse__Output>
  WaitProcess: MethodDefinition<_vrun_agent_v1_WaitProcessRequest, _vrun_agent_v1_WaitProcessResponse, _vrun_agent_v1_WaitProcessRequest__Output, _vrun_agent_v1_WaitProcessResponse__Output>
  WriteStdin: MethodDefinition<_vrun_agent_v1_WriteStdinRequest, _vrun_agent_v1_WriteStdinResponse, _vrun_agent_v1_WriteStdinRequest__Output, _vrun_agent_v1_WriteStdinResponse__Output>
}
