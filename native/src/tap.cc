#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "errno_error.h"
#include "netns_thread.h"
#include "tap_poll.h"

namespace vrun {
namespace {

// struct virtio_net_hdr_v1, which virtio 1.x frames carry both ways. <linux/virtio_net.h> does not compile as
// C++ (a member named `class`), hence this copy of the layout.
struct VnetHdrV1 {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
constexpr int kVnetHdrSize = sizeof(VnetHdrV1);
static_assert(kVnetHdrSize == 12, "virtio_net_hdr_v1 is 12 bytes");
constexpr unsigned kKnownOffloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;

struct OpenResult {
  int fd = -1;
  unsigned offloads = 0;
  int err = 0;
  const char* syscall = "";
  // The failure was entering the namespace, so the error names it rather than the tap.
  bool netns = false;
};

void Fail(OpenResult* r, const char* syscall) {
  r->err = errno;
  r->syscall = syscall;
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
}

// TUNSETOFFLOAD takes a set whole or refuses it with EINVAL (no way to ask what a tap supports), so the
// wanted set is tried, then checksum offload alone, then none: the first the tap takes is the answer.
bool SetOffloads(int fd, unsigned wanted, unsigned* accepted) {
  const unsigned tries[] = {wanted, wanted & TUN_F_CSUM, 0};
  for (unsigned t : tries) {
    if (ioctl(fd, TUNSETOFFLOAD, static_cast<unsigned long>(t)) == 0) {
      *accepted = t;
      return true;
    }
    if (errno != EINVAL) return false;
  }
  return false;
}

// What every attached tap gets, whoever attached it: 12-byte little-endian vnet headers and the offloads.
void ConfigureTap(unsigned offloads, OpenResult* r) {
  int hdr = kVnetHdrSize;
  if (ioctl(r->fd, TUNSETVNETHDRSZ, &hdr) != 0) return Fail(r, "TUNSETVNETHDRSZ");
  // virtio 1.x headers are little-endian whatever the host; the tap's default is the host's order.
  int le = 1;
  if (ioctl(r->fd, TUNSETVNETLE, &le) != 0) return Fail(r, "TUNSETVNETLE");
  if (!SetOffloads(r->fd, offloads & kKnownOffloads, &r->offloads)) return Fail(r, "TUNSETOFFLOAD");
}

void OpenTap(const std::string& name, unsigned offloads, OpenResult* r) {
  // Looked up first so that a wrong name does not even briefly create a tap (TUNSETIFF would, see below).
  if (if_nametoindex(name.c_str()) == 0) {
    errno = ENODEV;
    return Fail(r, "if_nametoindex");
  }
  r->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (r->fd < 0) return Fail(r, "open(/dev/net/tun)");
  struct ifreq ifr = {};
  memcpy(ifr.ifr_name, name.data(), name.size());
  // No IFF_MULTI_QUEUE: one queue pair; a multi-queue tap refuses this attach with EINVAL.
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (ioctl(r->fd, TUNSETIFF, &ifr) != 0) return Fail(r, "TUNSETIFF");
  // TUNSETIFF creates a tap when none has the name; the VMM only ever attaches to the one the network set up
  // (its addresses, its tc redirect), so a tap made here is a wrong name, and closing the fd removes it again.
  if (ioctl(r->fd, TUNGETIFF, &ifr) != 0) return Fail(r, "TUNGETIFF");
  if (!(ifr.ifr_flags & IFF_PERSIST)) {
    errno = ENODEV;
    return Fail(r, "TUNSETIFF (no persistent tap has this name)");
  }
  ConfigureTap(offloads, r);
}

// A tun fd belongs to the network namespace it was opened in: the open runs on a thread inside it.
void OpenTapIn(const std::string& netns, const std::string& name, unsigned offloads, OpenResult* r) {
  if (!RunInNetns(netns, &r->syscall, [&]() { OpenTap(name, offloads, r); })) {
    r->netns = true;
    Fail(r, r->syscall);
  }
}

// tapOpen(name, offloads, netns?) -> { fd, offloads }: attaches to the persistent tap `name`, nonblocking and
// close-on-exec, with 12-byte little-endian vnet headers and the TUN_F_* offloads it accepted of `offloads`.
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber() || (info.Length() > 2 && !info[2].IsString() && !info[2].IsUndefined())) {
    Napi::TypeError::New(env, "tapOpen(name: string, offloads: number, netns?: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (name.empty() || name.size() >= IFNAMSIZ || name.find('\0') != std::string::npos || name.find('/') != std::string::npos) {
    Napi::RangeError::New(env, "tapOpen: " + name + " is not an interface name").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  unsigned offloads = info[1].As<Napi::Number>().Uint32Value();
  OpenResult r;
  if (info.Length() > 2 && info[2].IsString()) {
    std::string netns = info[2].As<Napi::String>().Utf8Value();
    OpenTapIn(netns, name, offloads, &r);
    if (r.fd < 0) {
      ThrowErrno(env, r.err, r.syscall, r.netns ? netns : name);
      return env.Undefined();
    }
  } else {
    OpenTap(name, offloads, &r);
    if (r.fd < 0) {
      ThrowErrno(env, r.err, r.syscall, name);
      return env.Undefined();
    }
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, r.fd));
  out.Set("offloads", Napi::Number::New(env, r.offloads));
  return out;
}

// tapAdopt(fd, offloads) -> { offloads }: takes a tap fd another process attached (vrun-jailer's --tap, which the
// jailed VMM cannot do itself): it must be a tap attached with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR; it is made
// nonblocking and close-on-exec and configured as tapOpen configures its own. On failure the fd stays open (the
// caller owns it).
Napi::Value Adopt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "tapAdopt(fd: number, offloads: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ifreq ifr = {};
  if (fd < 3 || ioctl(fd, TUNGETIFF, &ifr) != 0) {
    ThrowErrno(env, fd < 3 ? EBADF : errno, "TUNGETIFF", "fd " + std::to_string(fd));
    return env.Undefined();
  }
  const short want = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if ((ifr.ifr_flags & (want | IFF_TUN)) != want) {
    ThrowErrno(env, EINVAL, "TUNGETIFF (not a tap with IFF_NO_PI|IFF_VNET_HDR)", "fd " + std::to_string(fd));
    return env.Undefined();
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    ThrowErrno(env, errno, "fcntl", "fd " + std::to_string(fd));
    return env.Undefined();
  }
  OpenResult r;
  r.fd = dup(fd);  // ConfigureTap closes its fd on failure; the caller's stays theirs
  if (r.fd < 0) {
    ThrowErrno(env, errno, "dup", "fd " + std::to_string(fd));
    return env.Undefined();
  }
  ConfigureTap(info[1].As<Napi::Number>().Uint32Value(), &r);
  if (r.fd < 0) {
    ThrowErrno(env, r.err, r.syscall, "fd " + std::to_string(fd));
    return env.Undefined();
  }
  close(r.fd);
  Napi::Object out = Napi::Object::New(env);
  out.Set("offloads", Napi::Number::New(env, r.offloads));
  return out;
}

// tapSetOffload(fd, offloads) -> the TUN_F_* set the tap took (see SetOffloads).
Napi::Value SetOffload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "tapSetOffload(fd: number, offloads: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  unsigned accepted = 0;
  if (!SetOffloads(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Uint32Value() & kKnownOffloads, &accepted)) {
    ThrowErrno(env, errno, "TUNSETOFFLOAD");
    return env.Undefined();
  }
  return Napi::Number::New(env, accepted);
}

// The data path returns -errno rather than throwing: a full or vanished tap is a counted drop in the device
// model, and an exception per frame would cost more than the frame.
bool BufferArgs(const Napi::CallbackInfo& info, const char* usage, int* fd, Napi::Buffer<uint8_t>* buf, size_t* len) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsBuffer() || (info.Length() > 2 && !info[2].IsNumber())) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return false;
  }
  *fd = info[0].As<Napi::Number>().Int32Value();
  *buf = info[1].As<Napi::Buffer<uint8_t>>();
  *len = buf->Length();
  if (info.Length() > 2) {
    double want = info[2].As<Napi::Number>().DoubleValue();
    if (!(want >= 0 && want <= static_cast<double>(*len))) {
      Napi::RangeError::New(env, std::string(usage) + ": length past the buffer").ThrowAsJavaScriptException();
      return false;
    }
    *len = static_cast<size_t>(want);
  }
  return true;
}

// tapRead(fd, buf) -> bytes of one frame (vnet header first), or -errno (-EAGAIN: nothing waiting).
Napi::Value Read(const Napi::CallbackInfo& info) {
  int fd;
  Napi::Buffer<uint8_t> buf;
  size_t len;
  if (!BufferArgs(info, "tapRead(fd: number, buf: Buffer)", &fd, &buf, &len)) return info.Env().Undefined();
  ssize_t n;
  do {
    n = read(fd, buf.Data(), len);
  } while (n < 0 && errno == EINTR);
  return Napi::Number::New(info.Env(), n < 0 ? -errno : static_cast<double>(n));
}

// tapWrite(fd, buf, len) -> bytes written (the tap takes a frame whole or not at all), or -errno.
Napi::Value Write(const Napi::CallbackInfo& info) {
  int fd;
  Napi::Buffer<uint8_t> buf;
  size_t len;
  if (!BufferArgs(info, "tapWrite(fd: number, buf: Buffer, len: number)", &fd, &buf, &len)) return info.Env().Undefined();
  ssize_t n;
  do {
    n = write(fd, buf.Data(), len);
  } while (n < 0 && errno == EINTR);
  return Napi::Number::New(info.Env(), n < 0 ? -errno : static_cast<double>(n));
}

}  // namespace

void InitTap(Napi::Env env, Napi::Object exports) {
  exports.Set("tapOpen", Napi::Function::New(env, Open));
  exports.Set("tapAdopt", Napi::Function::New(env, Adopt));
  exports.Set("tapSetOffload", Napi::Function::New(env, SetOffload));
  exports.Set("tapRead", Napi::Function::New(env, Read));
  exports.Set("tapWrite", Napi::Function::New(env, Write));
  exports.Set("tapVnetHdrSize", Napi::Number::New(env, kVnetHdrSize));
  TapPoll::Init(env, exports);
}

}  // namespace vrun
