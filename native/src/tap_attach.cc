#include "tap_attach.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/tc_act/tc_mirred.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "errno_error.h"
#include "unique_fd.h"
#include "netns_thread.h"
#include "rtnetlink.h"

// What src/network/tap.ts once did with eight `ip` and `tc` processes (40 to 80 ms each on a loaded host), as a
// handful of rtnetlink requests on a thread inside the pod's namespace: a few milliseconds in all.
namespace vrun {
namespace {

struct Failure {
  int err = 0;
  std::string step;
};

using Fd = UniqueFd;

// One rtnetlink request: a header, a fixed part (ifinfomsg, tcmsg), then attributes, some nested.
class Request {
 public:
  Request(uint16_t type, uint16_t flags, const void* fixed, size_t fixedLen) {
    buf_.resize(NLMSG_HDRLEN);
    Append(fixed, fixedLen);
    auto* h = Header();
    h->nlmsg_type = type;
    h->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
  }
  void Attr(uint16_t type, const void* data, size_t len) {
    rtattr a{static_cast<unsigned short>(RTA_LENGTH(len)), type};
    Append(&a, sizeof a);
    Append(data, len);
  }
  void Str(uint16_t type, const char* s) { Attr(type, s, strlen(s) + 1); }
  void U32(uint16_t type, uint32_t v) { Attr(type, &v, sizeof v); }
  void U8(uint16_t type, uint8_t v) { Attr(type, &v, sizeof v); }
  size_t Begin(uint16_t type) {
    size_t at = buf_.size();
    rtattr a{0, static_cast<unsigned short>(type | NLA_F_NESTED)};
    Append(&a, sizeof a);
    return at;
  }
  void End(size_t at) { reinterpret_cast<rtattr*>(buf_.data() + at)->rta_len = static_cast<unsigned short>(buf_.size() - at); }
  nlmsghdr* Finish() {
    auto* h = Header();
    h->nlmsg_len = static_cast<uint32_t>(buf_.size());
    return h;
  }

 private:
  nlmsghdr* Header() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
  void Append(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    buf_.insert(buf_.end(), b, b + n);
    Pad();
  }
  void Pad() { buf_.resize(NLMSG_ALIGN(buf_.size())); }
  std::vector<uint8_t> buf_;
};

// The requests' socket: a failure of the socket itself lands in f, named after the step.
class Rtnl {
 public:
  bool Open(Failure& f) {
    const char* call = "";
    if (!sock_.Open(&call)) return f = {errno, call}, false;
    return true;
  }
  // Sends the request and waits for its acknowledgement: 0, the kernel's errno (positive), or -1 (f filled).
  int Call(Request& r, Failure& f, const std::string& step) {
    const char* call = "";
    int rc = sock_.Exchange(r.Finish(), [](const nlmsghdr*) {}, &call);
    if (rc < 0) f = {errno, step + ": " + call};
    return rc;
  }

 private:
  RtnlSocket sock_;
};

bool Check(int rc, Failure& f, const std::string& step) {
  if (rc < 0) return false;  // Call filled f
  if (rc > 0) {
    f = {rc, step};
    return false;
  }
  return true;
}

struct AttachSpec {
  std::string veth;
  std::string tap;
  uint32_t mtu = 0;
  int64_t uid = -1;
  int64_t gid = -1;
  bool multiQueue = false;
  bool matchall = true;
};

// A persistent tap (as `ip tuntap add ... vnet_hdr [user U] [group G]`).
bool CreateTap(const AttachSpec& s, Failure& f) {
  if (if_nametoindex(s.tap.c_str()) != 0) {
    f = {EEXIST, "creating tap " + s.tap};
    return false;
  }
  Fd tun(open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (tun.get() < 0) return f = {errno, "open(/dev/net/tun)"}, false;
  ifreq ifr{};
  memcpy(ifr.ifr_name, s.tap.data(), s.tap.size());
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (s.multiQueue ? IFF_MULTI_QUEUE : 0));
  if (ioctl(tun.get(), TUNSETIFF, &ifr) != 0) return f = {errno, "creating tap " + s.tap + ": TUNSETIFF"}, false;
  if (s.uid >= 0 && ioctl(tun.get(), TUNSETOWNER, static_cast<unsigned long>(s.uid)) != 0) return f = {errno, "TUNSETOWNER"}, false;
  if (s.gid >= 0 && ioctl(tun.get(), TUNSETGROUP, static_cast<unsigned long>(s.gid)) != 0) return f = {errno, "TUNSETGROUP"}, false;
  if (ioctl(tun.get(), TUNSETPERSIST, 1UL) != 0) return f = {errno, "TUNSETPERSIST"}, false;
  return true;
}

bool SetLink(Rtnl& nl, int index, const AttachSpec& s, Failure& f) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  // addrgenmode none first, then up: no IPv6 link-local address on the tap, so the namespace's own stack sends
  // nothing (router solicitations, MLD) into the guest; only the pod's traffic crosses.
  Request mode(RTM_NEWLINK, 0, &ifi, sizeof ifi);
  mode.U32(IFLA_MTU, s.mtu);
  size_t spec = mode.Begin(IFLA_AF_SPEC);
  size_t inet6 = mode.Begin(AF_INET6);
  mode.U8(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
  mode.End(inet6);
  mode.End(spec);
  if (!Check(nl.Call(mode, f, "setting up tap " + s.tap), f, "setting the MTU and addrgenmode of tap " + s.tap)) return false;
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  Request up(RTM_NEWLINK, 0, &ifi, sizeof ifi);
  return Check(nl.Call(up, f, "setting up tap " + s.tap), f, "setting tap " + s.tap + " up");
}

bool AddIngress(Rtnl& nl, int index, const std::string& dev, Failure& f) {
  tcmsg tc{};
  tc.tcm_family = AF_UNSPEC;
  tc.tcm_ifindex = index;
  tc.tcm_handle = TC_H_MAKE(TC_H_INGRESS, 0);
  tc.tcm_parent = TC_H_INGRESS;
  Request r(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, &tc, sizeof tc);
  r.Str(TCA_KIND, "ingress");
  return Check(nl.Call(r, f, "adding an ingress qdisc to " + dev), f, "adding an ingress qdisc to " + dev);
}

// The action list both classifiers carry: mirred, egress redirect to `to`, the frame then stolen.
void MirredActions(Request& r, uint16_t listType, int to) {
  size_t list = r.Begin(listType);
  size_t first = r.Begin(1);  // actions are numbered from 1 in the order they run
  r.Str(TCA_ACT_KIND, "mirred");
  size_t opts = r.Begin(TCA_ACT_OPTIONS);
  tc_mirred m{};
  m.action = TC_ACT_STOLEN;
  m.eaction = TCA_EGRESS_REDIR;
  m.ifindex = static_cast<uint32_t>(to);
  r.Attr(TCA_MIRRED_PARMS, &m, sizeof m);
  r.End(opts);
  r.End(first);
  r.End(list);
}

// tc filter add dev FROM parent ffff: protocol all {matchall | u32 match u8 0 0} action mirred egress redirect dev TO.
// Returns the kernel's errno for the classifier (0 when added), -1 for a failure of the socket itself.
int AddRedirect(Rtnl& nl, int from, int to, bool matchall, Failure& f, const std::string& step) {
  tcmsg tc{};
  tc.tcm_family = AF_UNSPEC;
  tc.tcm_ifindex = from;
  tc.tcm_parent = TC_H_MAKE(TC_H_INGRESS, 0);
  tc.tcm_info = TC_H_MAKE(0, htons(ETH_P_ALL));  // priority 0: the kernel picks one
  Request r(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, &tc, sizeof tc);
  r.Str(TCA_KIND, matchall ? "matchall" : "u32");
  size_t opts = r.Begin(TCA_OPTIONS);
  if (matchall) {
    MirredActions(r, TCA_MATCHALL_ACT, to);
  } else {
    // One key that compares 0 bits of byte 0: it matches every frame (for kernels without matchall).
    uint8_t sel[sizeof(tc_u32_sel) + sizeof(tc_u32_key)] = {};
    tc_u32_sel head{};
    head.flags = TC_U32_TERMINAL;
    head.nkeys = 1;
    memcpy(sel, &head, sizeof head);  // the key after it stays all zero: mask 0, value 0, offset 0
    r.Attr(TCA_U32_SEL, sel, sizeof sel);
    MirredActions(r, TCA_U32_ACT, to);
  }
  r.End(opts);
  return nl.Call(r, f, step);
}

bool DeleteLink(Rtnl& nl, int index, Failure& f, const std::string& step) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  Request r(RTM_DELLINK, 0, &ifi, sizeof ifi);
  int rc = nl.Call(r, f, step);
  return rc == 0 || rc == ENODEV || (rc > 0 ? (f = {rc, step}, false) : false);
}

bool DeleteIngress(Rtnl& nl, int index, Failure& f, const std::string& step) {
  tcmsg tc{};
  tc.tcm_family = AF_UNSPEC;
  tc.tcm_ifindex = index;
  tc.tcm_handle = TC_H_MAKE(TC_H_INGRESS, 0);
  tc.tcm_parent = TC_H_INGRESS;
  Request r(RTM_DELQDISC, 0, &tc, sizeof tc);
  int rc = nl.Call(r, f, step);
  // Gone already (no qdisc: EINVAL or ENOENT, no device: ENODEV) is what removal wants.
  return rc == 0 || rc == EINVAL || rc == ENOENT || rc == ENODEV || (rc > 0 ? (f = {rc, step}, false) : false);
}

// Returns the classifier used ("matchall" or "u32"), or "" with f set. On failure, only what it made goes again.
std::string Attach(const AttachSpec& s, Failure& f) {
  int veth = static_cast<int>(if_nametoindex(s.veth.c_str()));
  if (veth == 0) return f = {errno, "finding " + s.veth}, "";
  Rtnl nl;
  if (!nl.Open(f)) return "";
  if (!CreateTap(s, f)) return "";
  int tap = static_cast<int>(if_nametoindex(s.tap.c_str()));
  bool vethQdisc = false;
  std::string used;
  Failure ignored;
  if (tap == 0) {
    f = {errno, "finding tap " + s.tap};
  } else if (SetLink(nl, tap, s, f) && (vethQdisc = AddIngress(nl, veth, s.veth, f)) && AddIngress(nl, tap, s.tap, f)) {
    bool matchall = s.matchall;
    const std::string step = "redirecting " + s.veth + " to " + s.tap + " with tc";
    int rc = AddRedirect(nl, veth, tap, matchall, f, step);
    // A kernel without CONFIG_NET_CLS_MATCHALL (this host's) does not know the classifier: u32 does the same.
    if (matchall && (rc == ENOENT || rc == EOPNOTSUPP)) rc = AddRedirect(nl, veth, tap, matchall = false, f, step);
    if (Check(rc, f, step) && Check(AddRedirect(nl, tap, veth, matchall, f, "redirecting " + s.tap + " to " + s.veth + " with tc"), f,
                                   "redirecting " + s.tap + " to " + s.veth + " with tc")) {
      used = matchall ? "matchall" : "u32";
    }
  }
  if (used.empty()) {
    // The tap's qdisc and filters go with it; an ingress qdisc the veth had before is someone else's.
    if (tap != 0) DeleteLink(nl, tap, ignored, "");
    if (vethQdisc) DeleteIngress(nl, veth, ignored, "");
  }
  return used;
}

bool Detach(const std::string& veth, const std::string& tap, Failure& f) {
  Rtnl nl;
  if (!nl.Open(f)) return false;
  int t = static_cast<int>(if_nametoindex(tap.c_str()));
  if (t != 0 && !DeleteLink(nl, t, f, "deleting tap " + tap)) return false;
  int v = static_cast<int>(if_nametoindex(veth.c_str()));
  return v == 0 || DeleteIngress(nl, v, f, "removing the ingress qdisc of " + veth);
}

bool IfName(const Napi::Value& v) {
  if (!v.IsString()) return false;
  std::string s = v.As<Napi::String>().Utf8Value();
  return !s.empty() && s.size() < IFNAMSIZ && s.find('/') == std::string::npos && s.find_first_of(" \t\n:") == std::string::npos;
}

Napi::Value ThrowFailure(Napi::Env env, const Failure& f) {
  ThrowErrno(env, f.err, f.step);
  return env.Undefined();
}

// tapAttach(netns, veth, tap, { mtu, uid?, gid?, multiQueue?, classifier? }): "matchall" | "u32"
Napi::Value AttachJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "tapAttach(netns: string, veth: string, tap: string, { mtu: number, uid?: number, gid?: number, multiQueue?: boolean, classifier?: 'matchall' | 'u32' })";
  if (info.Length() != 4 || !info[0].IsString() || !IfName(info[1]) || !IfName(info[2]) || !info[3].IsObject()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = info[3].As<Napi::Object>();
  AttachSpec s;
  s.veth = info[1].As<Napi::String>().Utf8Value();
  s.tap = info[2].As<Napi::String>().Utf8Value();
  auto id = [&](const char* key, int64_t* out) {
    Napi::Value v = o.Get(key);
    if (v.IsUndefined()) return true;
    if (!v.IsNumber()) return false;
    double d = v.As<Napi::Number>().DoubleValue();
    if (d < 0 || d >= 4294967295.0 || d != static_cast<double>(static_cast<int64_t>(d))) return false;
    *out = static_cast<int64_t>(d);
    return true;
  };
  Napi::Value mtu = o.Get("mtu");
  Napi::Value classifier = o.Get("classifier");
  if (!mtu.IsNumber() || mtu.As<Napi::Number>().DoubleValue() < 68 || mtu.As<Napi::Number>().DoubleValue() > 65535 || !id("uid", &s.uid) ||
      !id("gid", &s.gid) || !(o.Get("multiQueue").IsUndefined() || o.Get("multiQueue").IsBoolean()) ||
      !(classifier.IsUndefined() || classifier.IsString())) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  s.mtu = mtu.As<Napi::Number>().Uint32Value();
  s.multiQueue = o.Get("multiQueue").IsBoolean() && o.Get("multiQueue").As<Napi::Boolean>().Value();
  s.matchall = !(classifier.IsString() && classifier.As<Napi::String>().Utf8Value() == "u32");
  Failure f;
  std::string used;
  const char* nsCall = "";
  if (!RunInNetns(info[0].As<Napi::String>().Utf8Value(), &nsCall, [&]() { used = Attach(s, f); })) {
    ThrowErrno(env, errno, nsCall, info[0].As<Napi::String>().Utf8Value());
    return env.Undefined();
  }
  if (used.empty()) return ThrowFailure(env, f);
  return Napi::String::New(env, used);
}

// tapDetach(netns, veth, tap): removes the tap (its qdisc and filters go with it) and the veth's ingress qdisc;
// what is gone already is fine.
Napi::Value DetachJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 3 || !info[0].IsString() || !IfName(info[1]) || !IfName(info[2])) {
    Napi::TypeError::New(env, "tapDetach(netns: string, veth: string, tap: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Failure f;
  bool ok = false;
  const char* nsCall = "";
  if (!RunInNetns(info[0].As<Napi::String>().Utf8Value(), &nsCall, [&]() {
        ok = Detach(info[1].As<Napi::String>().Utf8Value(), info[2].As<Napi::String>().Utf8Value(), f);
      })) {
    ThrowErrno(env, errno, nsCall, info[0].As<Napi::String>().Utf8Value());
    return env.Undefined();
  }
  if (!ok) return ThrowFailure(env, f);
  return env.Undefined();
}

}  // namespace

void InitTapAttach(Napi::Env env, Napi::Object exports) {
  exports.Set("tapAttach", Napi::Function::New(env, AttachJs));
  exports.Set("tapDetach", Napi::Function::New(env, DetachJs));
}

}  // namespace vrun
