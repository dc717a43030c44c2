#include "netlink_snapshot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_addr.h>
#include <linux/if_arp.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "errno_error.h"
#include "netns_thread.h"
#include "rtnetlink.h"

// The values are copied out as the kernel gives them (numbers, raw addresses as text); src/network/link-info.ts
// checks them and turns them into what the pod's NICs need. Dumps are bounded: a namespace a pod may fill
// (it cannot: the pod is in its guest, but a CNI plugin could) yields at most kMaxEntries of each kind.
namespace vrun {
namespace {

constexpr size_t kMaxEntries = 4096;

struct Link {
  int index = 0;
  std::string name;
  std::string mac;
  uint32_t mtu = 0;
  unsigned flags = 0;
  unsigned type = 0;
  std::string kind;
};

struct Addr {
  int family = 0;
  int index = 0;
  unsigned prefixLength = 0;
  unsigned scope = 0;
  std::string address;
};

struct Route {
  int family = 0;
  unsigned table = 0;
  unsigned type = 0;
  unsigned protocol = 0;
  unsigned scope = 0;
  unsigned flags = 0;
  unsigned dstLength = 0;
  std::string dst;
  std::string gateway;
  int oif = 0;
  bool multipath = false;
  int64_t metric = -1;
};

struct Neigh {
  int family = 0;
  int index = 0;
  unsigned state = 0;
  std::string ip;
  std::string mac;
};

struct Snapshot {
  std::vector<Link> links;
  std::vector<Addr> addrs;
  std::vector<Route> routes;
  std::vector<Neigh> neighbors;
  int err = 0;
  std::string step;
};

std::string Mac(const void* p, size_t len) {
  if (len != 6) return "";
  const auto* b = static_cast<const uint8_t*>(p);
  char s[18];
  snprintf(s, sizeof s, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
  return s;
}

std::string Ip(int family, const void* p, size_t len) {
  char s[INET6_ADDRSTRLEN];
  if ((family == AF_INET && len != 4) || (family == AF_INET6 && len != 16) || (family != AF_INET && family != AF_INET6)) return "";
  return inet_ntop(family, p, s, sizeof s) ? s : "";
}

// Sends one dump request and hands every reply message of it to `each`; false with s.err/s.step on failure.
template <typename Each>
bool Dump(RtnlSocket& sock, uint16_t type, const void* fixed, size_t fixedLen, Snapshot& s, const char* step, Each each) {
  std::vector<uint8_t> req(NLMSG_SPACE(fixedLen));
  auto* h = reinterpret_cast<nlmsghdr*>(req.data());
  h->nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(fixedLen));
  h->nlmsg_type = type;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  memcpy(NLMSG_DATA(h), fixed, fixedLen);
  const char* call = "";
  int rc = sock.Exchange(h, each, &call);
  if (rc == 0) return true;
  s.err = rc > 0 ? rc : errno;
  s.step = rc > 0 ? std::string(step) : std::string(step) + ": " + call;
  return false;
}

template <typename Fn>
void Attrs(const nlmsghdr* m, size_t fixedLen, Fn fn) {
  auto* a = reinterpret_cast<const rtattr*>(reinterpret_cast<const uint8_t*>(NLMSG_DATA(m)) + NLMSG_ALIGN(fixedLen));
  int len = static_cast<int>(m->nlmsg_len) - static_cast<int>(NLMSG_LENGTH(fixedLen));
  for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) fn(a->rta_type & NLA_TYPE_MASK, RTA_DATA(a), RTA_PAYLOAD(a));
}

uint32_t U32(const void* p, size_t len) {
  uint32_t v = 0;
  if (len >= sizeof v) memcpy(&v, p, sizeof v);
  return v;
}

void Take(Snapshot& s) {
  RtnlSocket sock;
  const char* call = "";
  if (!sock.Open(&call)) {
    s.err = errno;
    s.step = call;
    return;
  }
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  bool ok = Dump(sock, RTM_GETLINK, &ifi, sizeof ifi, s, "dumping links", [&](const nlmsghdr* m) {
    if (m->nlmsg_type != RTM_NEWLINK || s.links.size() >= kMaxEntries || m->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) return;
    const auto* i = static_cast<const ifinfomsg*>(NLMSG_DATA(m));
    Link l;
    l.index = i->ifi_index;
    l.flags = i->ifi_flags;
    l.type = i->ifi_type;
    Attrs(m, sizeof(ifinfomsg), [&](unsigned type, const void* p, size_t len) {
      if (type == IFLA_IFNAME) l.name.assign(static_cast<const char*>(p), strnlen(static_cast<const char*>(p), len));
      if (type == IFLA_ADDRESS) l.mac = Mac(p, len);
      if (type == IFLA_MTU) l.mtu = U32(p, len);
      if (type == IFLA_LINKINFO) {
        auto* a = static_cast<const rtattr*>(p);
        int left = static_cast<int>(len);
        for (; RTA_OK(a, left); a = RTA_NEXT(a, left)) {
          if ((a->rta_type & NLA_TYPE_MASK) == IFLA_INFO_KIND) {
            l.kind.assign(static_cast<const char*>(RTA_DATA(a)), strnlen(static_cast<const char*>(RTA_DATA(a)), RTA_PAYLOAD(a)));
          }
        }
      }
    });
    s.links.push_back(l);
  });
  ifaddrmsg ifa{};
  ifa.ifa_family = AF_UNSPEC;
  ok = ok && Dump(sock, RTM_GETADDR, &ifa, sizeof ifa, s, "dumping addresses", [&](const nlmsghdr* m) {
    if (m->nlmsg_type != RTM_NEWADDR || s.addrs.size() >= kMaxEntries || m->nlmsg_len < NLMSG_LENGTH(sizeof(ifaddrmsg))) return;
    const auto* i = static_cast<const ifaddrmsg*>(NLMSG_DATA(m));
    Addr a;
    a.family = i->ifa_family;
    a.index = static_cast<int>(i->ifa_index);
    a.prefixLength = i->ifa_prefixlen;
    a.scope = i->ifa_scope;
    std::string address, local;
    Attrs(m, sizeof(ifaddrmsg), [&](unsigned type, const void* p, size_t len) {
      if (type == IFA_ADDRESS) address = Ip(a.family, p, len);
      if (type == IFA_LOCAL) local = Ip(a.family, p, len);
    });
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a point-to-point link (as iproute2's "local").
    a.address = local.empty() ? address : local;
    s.addrs.push_back(a);
  });
  rtmsg rt{};
  rt.rtm_family = AF_UNSPEC;
  ok = ok && Dump(sock, RTM_GETROUTE, &rt, sizeof rt, s, "dumping routes", [&](const nlmsghdr* m) {
    if (m->nlmsg_type != RTM_NEWROUTE || s.routes.size() >= kMaxEntries || m->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) return;
    const auto* r = static_cast<const rtmsg*>(NLMSG_DATA(m));
    Route o;
    o.family = r->rtm_family;
    o.table = r->rtm_table;
    o.type = r->rtm_type;
    o.protocol = r->rtm_protocol;
    o.scope = r->rtm_scope;
    o.flags = r->rtm_flags;
    o.dstLength = r->rtm_dst_len;
    Attrs(m, sizeof(rtmsg), [&](unsigned type, const void* p, size_t len) {
      if (type == RTA_TABLE) o.table = U32(p, len);
      if (type == RTA_DST) o.dst = Ip(o.family, p, len);
      if (type == RTA_GATEWAY) o.gateway = Ip(o.family, p, len);
      if (type == RTA_OIF) o.oif = static_cast<int>(U32(p, len));
      if (type == RTA_PRIORITY) o.metric = U32(p, len);
      if (type == RTA_MULTIPATH) o.multipath = true;
    });
    s.routes.push_back(o);
  });
  ndmsg nd{};
  nd.ndm_family = AF_UNSPEC;
  ok = ok && Dump(sock, RTM_GETNEIGH, &nd, sizeof nd, s, "dumping neighbours", [&](const nlmsghdr* m) {
    if (m->nlmsg_type != RTM_NEWNEIGH || s.neighbors.size() >= kMaxEntries || m->nlmsg_len < NLMSG_LENGTH(sizeof(ndmsg))) return;
    const auto* n = static_cast<const ndmsg*>(NLMSG_DATA(m));
    Neigh o;
    o.family = n->ndm_family;
    o.index = n->ndm_ifindex;
    o.state = n->ndm_state;
    Attrs(m, sizeof(ndmsg), [&](unsigned type, const void* p, size_t len) {
      if (type == NDA_DST) o.ip = Ip(o.family, p, len);
      if (type == NDA_LLADDR) o.mac = Mac(p, len);
    });
    s.neighbors.push_back(o);
  });
  (void)ok;
}

// netlinkSnapshot(netns): { links, addresses, routes, neighbors }, each an array of plain objects of numbers and
// strings (family 4 or 6 for addresses, routes and neighbours; others are left out).
Napi::Value SnapshotJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "netlinkSnapshot(netns: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string netns = info[0].As<Napi::String>().Utf8Value();
  Snapshot s;
  const char* nsCall = "";
  if (!RunInNetns(netns, &nsCall, [&]() { Take(s); })) {
    ThrowErrno(env, errno, nsCall, netns);
    return env.Undefined();
  }
  if (s.err != 0) {
    ThrowErrno(env, s.err, s.step);
    return env.Undefined();
  }
  auto fam = [](int f) { return f == AF_INET ? 4 : f == AF_INET6 ? 6 : 0; };
  Napi::Object out = Napi::Object::New(env);
  Napi::Array links = Napi::Array::New(env);
  for (const auto& l : s.links) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", l.index);
    o.Set("name", l.name);
    o.Set("mac", l.mac);
    o.Set("mtu", l.mtu);
    o.Set("up", (l.flags & IFF_UP) != 0);
    o.Set("loopback", l.type == ARPHRD_LOOPBACK);
    o.Set("kind", l.kind);
    links.Set(links.Length(), o);
  }
  Napi::Array addrs = Napi::Array::New(env);
  for (const auto& a : s.addrs) {
    if (fam(a.family) == 0) continue;
    Napi::Object o = Napi::Object::New(env);
    o.Set("family", fam(a.family));
    o.Set("index", a.index);
    o.Set("address", a.address);
    o.Set("prefixLength", a.prefixLength);
    o.Set("global", a.scope == RT_SCOPE_UNIVERSE);
    addrs.Set(addrs.Length(), o);
  }
  Napi::Array routes = Napi::Array::New(env);
  for (const auto& r : s.routes) {
    if (fam(r.family) == 0 || r.table != RT_TABLE_MAIN || r.type != RTN_UNICAST) continue;
    Napi::Object o = Napi::Object::New(env);
    o.Set("family", fam(r.family));
    o.Set("dst", r.dst);
    o.Set("dstLength", r.dstLength);
    o.Set("gateway", r.gateway);
    o.Set("index", r.oif);
    o.Set("multipath", r.multipath);
    o.Set("protocol", r.protocol);
    o.Set("scope", r.scope);
    o.Set("onlink", (r.flags & RTNH_F_ONLINK) != 0);
    if (r.metric >= 0) o.Set("metric", static_cast<double>(r.metric));
    routes.Set(routes.Length(), o);
  }
  Napi::Array neighbors = Napi::Array::New(env);
  for (const auto& n : s.neighbors) {
    if (fam(n.family) == 0 || !(n.state & NUD_PERMANENT)) continue;
    Napi::Object o = Napi::Object::New(env);
    o.Set("family", fam(n.family));
    o.Set("index", n.index);
    o.Set("ip", n.ip);
    o.Set("mac", n.mac);
    neighbors.Set(neighbors.Length(), o);
  }
  out.Set("links", links);
  out.Set("addresses", addrs);
  out.Set("routes", routes);
  out.Set("neighbors", neighbors);
  return out;
}

}  // namespace

void InitNetlinkSnapshot(Napi::Env env, Napi::Object exports) { exports.Set("netlinkSnapshot", Napi::Function::New(env, SnapshotJs)); }

}  // namespace vrun
