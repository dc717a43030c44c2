// Original file: proto/vrun/agent/v1/agent.proto


export interface SetDnsRequest {
  'nameservers'?: (string)[];
  'searches'?: (string)[];
  'options'?: (string)[];
}

export interface SetDnsRequest__Output {
  'nameservers': (string)[];
  'searches': (string)[];
  'options': (string)[];
}
