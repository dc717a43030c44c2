#include "idmap.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <linux/securebits.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "errno_error.h"
#include "unique_fd.h"

namespace vrun {
namespace {

using Fd = UniqueFd;

struct Failure {
  int err;
  std::string syscall;
  std::string path;
};

bool WriteFile(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
  int err = errno;
  close(fd);
  errno = err;
  return ok;
}

// A user namespace whose uids and gids 0..count-1 are host ids base..base+count-1, as an fd. A child is cloned
// straight into a new namespace only to hold it while the maps are written and the fd is opened: it runs no
// code but read(2) and _exit(2), which is safe in a copy of a multi-threaded process.
int MakeUserns(uint32_t base, uint32_t count, Failure& f) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) {
    f = {errno, "pipe2", ""};
    return -1;
  }
  long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) {
    char c;
    close(pipefd[1]);
    while (read(pipefd[0], &c, 1) < 0 && errno == EINTR) {
    }
    _exit(0);
  }
  close(pipefd[0]);
  if (pid < 0) {
    f = {errno, "clone(CLONE_NEWUSER)", ""};
    close(pipefd[1]);
    return -1;
  }
  const std::string proc = "/proc/" + std::to_string(pid);
  const std::string map = "0 " + std::to_string(base) + " " + std::to_string(count) + "\n";
  int fd = -1;
  if (!WriteFile(proc + "/uid_map", map)) {
    f = {errno, "write", proc + "/uid_map"};
  } else if (!WriteFile(proc + "/gid_map", map)) {
    f = {errno, "write", proc + "/gid_map"};
  } else if ((fd = open((proc + "/ns/user").c_str(), O_RDONLY | O_CLOEXEC)) < 0) {
    f = {errno, "open", proc + "/ns/user"};
  }
  close(pipefd[1]);  // the child's read returns: it exits
  while (waitpid(static_cast<pid_t>(pid), nullptr, __WALL) < 0 && errno == EINTR) {
  }
  return fd;
}

// A detached copy of `path` (and, when recursive, of the mounts below it) with the user namespace's mapping
// and the given attributes, or -1.
int IdmappedClone(const std::string& path, int usernsFd, bool recursive, uint64_t attrs, uint64_t propagation, Failure& f) {
  unsigned int rec = recursive ? AT_RECURSIVE : 0;
  Fd tree(static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, path.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW | rec)));
  if (tree.get() < 0) {
    f = {errno, "open_tree", path};
    return -1;
  }
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_IDMAP | attrs;
  attr.userns_fd = static_cast<uint64_t>(usernsFd);
  attr.propagation = propagation;
  if (syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH | rec, &attr, sizeof attr) != 0) {
    f = {errno, "mount_setattr(MOUNT_ATTR_IDMAP)", path};
    return -1;
  }
  return tree.release();
}

bool MoveInto(int tree, const std::string& target, Failure& f) {
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    f = {errno, "move_mount", target};
    return false;
  }
  return true;
}

// The calling thread's fsuid/fsgid as `id` for one mount(2), capabilities kept (SECBIT_NO_SETUID_FIXUP):
// overlayfs records its creator's credentials and does copy-up, whiteouts and its work directory with them,
// through the id-mapped upper layer, where root (unmapped there) gets EOVERFLOW. Thread-local credentials.
bool MountAs(uint32_t id, const std::string& target, const std::string& data, unsigned long flags, Failure& f) {
  int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
  if (bits < 0 || prctl(PR_SET_SECUREBITS, static_cast<unsigned long>(bits) | SECBIT_NO_SETUID_FIXUP, 0, 0, 0) != 0) {
    f = {errno, "prctl(PR_SET_SECUREBITS)", target};
    return false;
  }
  long oldGid = syscall(SYS_setfsgid, id);
  long oldUid = syscall(SYS_setfsuid, id);
  int rc = mount("overlay", target.c_str(), "overlay", flags, data.c_str());
  int err = errno;
  syscall(SYS_setfsuid, oldUid);
  syscall(SYS_setfsgid, oldGid);
  prctl(PR_SET_SECUREBITS, static_cast<unsigned long>(bits), 0, 0, 0);
  if (rc != 0) {
    f = {err, "mount(overlay)", target};
    return false;
  }
  return true;
}

// Linux before 6.15 takes overlayfs layers only from mounts attached in the caller's mount namespace: its
// clone_private_mount() refuses a detached copy ("overlayfs: failed to clone upperpath", EINVAL), while from 6.3
// on tmpfs can be id-mapped. So the id-mapped copies are attached for the overlay's mount(2) alone, each on a
// directory in a private tmpfs (nothing mounted in it propagates) on a fresh root-only directory in /run, all
// detached and removed right after: overlayfs holds private clones of its layers.
class Staging {
 public:
  ~Staging() {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
    if (!dir_.empty()) rmdir(dir_.c_str());
  }
  bool Open(Failure& f) {
    char tmpl[] = "/run/.vrun-idmap-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      f = {errno, "mkdtemp", tmpl};
      return false;
    }
    dir_ = tmpl;
    if (mount("tmpfs", dir_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0700") != 0) {
      f = {errno, "mount(tmpfs)", dir_};
      return false;
    }
    mounted_ = true;
    if (mount(nullptr, dir_.c_str(), nullptr, MS_PRIVATE, nullptr) != 0) {
      f = {errno, "mount(MS_PRIVATE)", dir_};
      return false;
    }
    return true;
  }
  // Attaches the detached `tree` on a new directory in the staging tmpfs; its path, or "" on failure.
  std::string Attach(int tree, Failure& f) {
    std::string p = dir_ + "/" + std::to_string(count_++);
    if (mkdir(p.c_str(), 0700) != 0) {
      f = {errno, "mkdir", p};
      return "";
    }
    return MoveInto(tree, p, f) ? p : "";
  }

 private:
  std::string dir_;
  bool mounted_ = false;
  unsigned count_ = 0;
};

std::string Dirname(const std::string& p) {
  size_t at = p.find_last_of('/');
  return at == std::string::npos || at == 0 ? "/" : p.substr(0, at);
}

std::string Basename(const std::string& p) { return p.substr(p.find_last_of('/') + 1); }

const uint64_t kGuestData = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;

bool IsUint32(const Napi::Value& v) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  return d >= 0 && d <= 4294967295.0 && d == static_cast<double>(static_cast<uint32_t>(d));
}

bool IsFd(const Napi::Value& v) { return IsUint32(v) && v.As<Napi::Number>().Uint32Value() <= 0x7fffffff; }

bool Throw(Napi::Env env, const Failure& f) {
  if (f.path.empty()) {
    ThrowErrno(env, f.err, f.syscall);
  } else {
    ThrowErrno(env, f.err, f.syscall, f.path);
  }
  return false;
}

// idmapUserns(base, count): number (an O_CLOEXEC fd)
Napi::Value Userns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !IsUint32(info[0]) || !IsUint32(info[1]) || info[1].As<Napi::Number>().Uint32Value() == 0) {
    Napi::TypeError::New(env, "idmapUserns(base: uint32, count: uint32 > 0)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uint32_t base = info[0].As<Napi::Number>().Uint32Value();
  uint32_t count = info[1].As<Napi::Number>().Uint32Value();
  if (base == 0 || static_cast<uint64_t>(base) + count > 0xffffffffULL) {
    Napi::RangeError::New(env, "idmapUserns: the range must not include host id 0 nor reach 2^32-1").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Failure f{};
  int fd = MakeUserns(base, count, f);
  if (fd < 0) {
    Throw(env, f);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// idmapBind(source, target, usernsFd, recursive, readonly, slave): an id-mapped bind of `source` at `target`,
// nosuid,nodev,noexec (and read-only when asked), given its attributes while still detached: no copy of it
// propagated into a peer ever exists without them. `slave` makes it receive the source's later mounts while
// sending nothing back; otherwise it keeps the source's propagation (a peer of a shared source).
Napi::Value Bind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "idmapBind(source: string, target: string, usernsFd: number, recursive: boolean, readonly: boolean, slave: boolean)";
  if (info.Length() != 6 || !info[0].IsString() || !info[1].IsString() || !IsFd(info[2]) || !info[3].IsBoolean() || !info[4].IsBoolean() ||
      !info[5].IsBoolean()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string source = info[0].As<Napi::String>().Utf8Value();
  std::string target = info[1].As<Napi::String>().Utf8Value();
  uint64_t attrs = kGuestData | (info[4].As<Napi::Boolean>().Value() ? MOUNT_ATTR_RDONLY : 0);
  Failure f{};
  Fd tree(IdmappedClone(source, static_cast<int>(info[2].As<Napi::Number>().Uint32Value()), info[3].As<Napi::Boolean>().Value(), attrs,
                        info[5].As<Napi::Boolean>().Value() ? MS_SLAVE : 0, f));
  if (tree.get() < 0 || !MoveInto(tree.get(), target, f)) Throw(env, f);
  return env.Undefined();
}

// idmapOverlay(target, usernsFd, creatorId, lowers: string[], upper: string, work: string, data: string,
// readonly): overlayfs at `target` over id-mapped copies of its layers (overlayfs itself cannot be id-mapped),
// nosuid,nodev,noexec. upper and work ('' for a read-only overlay of lowers alone) must be siblings: one
// id-mapped copy of their parent holds both, as overlayfs wants them on one mount. `data` is the rest of
// overlayfs's options (index=off, ...), given by the caller without any *dir= option. `creatorId` is the host
// id the namespace maps 0 to: the mount is made with it as fsuid/fsgid.
Napi::Value Overlay(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage =
      "idmapOverlay(target: string, usernsFd: number, creatorId: number, lowers: string[], upper: string, work: string, data: string, readonly: boolean)";
  if (info.Length() != 8 || !info[0].IsString() || !IsFd(info[1]) || !IsUint32(info[2]) || !info[3].IsArray() || !info[4].IsString() ||
      !info[5].IsString() || !info[6].IsString() || !info[7].IsBoolean()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string target = info[0].As<Napi::String>().Utf8Value();
  int userns = static_cast<int>(info[1].As<Napi::Number>().Uint32Value());
  uint32_t creator = info[2].As<Napi::Number>().Uint32Value();
  Napi::Array lowerArr = info[3].As<Napi::Array>();
  std::string upper = info[4].As<Napi::String>().Utf8Value();
  std::string work = info[5].As<Napi::String>().Utf8Value();
  std::string extra = info[6].As<Napi::String>().Utf8Value();
  if (lowerArr.Length() == 0 || lowerArr.Length() > 500 || upper.empty() != work.empty() || creator == 0) {
    Napi::TypeError::New(env, "idmapOverlay: 1-500 lowers, upper and work both or neither, a non-zero creator id").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (!upper.empty() && Dirname(upper) != Dirname(work)) {
    Napi::Error::New(env, "idmapOverlay: upperdir " + upper + " and workdir " + work + " are not in one directory").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (extra.find("dir=") != std::string::npos) {
    Napi::TypeError::New(env, "idmapOverlay: data must not name layers").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  for (uint32_t i = 0; i < lowerArr.Length(); i++) {
    if (!lowerArr.Get(i).IsString()) {
      Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  Failure f{};
  Staging staging;
  if (!staging.Open(f)) return Throw(env, f), env.Undefined();
  // An id-mapped copy of `path`, attached in the staging tmpfs: its path there, or "".
  auto layer = [&](const std::string& path) {
    Fd tree(IdmappedClone(path, userns, false, 0, 0, f));
    return tree.get() < 0 ? std::string() : staging.Attach(tree.get(), f);
  };
  std::string data = "lowerdir=";
  for (uint32_t i = 0; i < lowerArr.Length(); i++) {
    std::string at = layer(lowerArr.Get(i).As<Napi::String>().Utf8Value());
    if (at.empty()) return Throw(env, f), env.Undefined();
    data += (i ? ":" : "") + at;
  }
  if (!upper.empty()) {
    std::string at = layer(Dirname(upper));
    if (at.empty()) return Throw(env, f), env.Undefined();
    data += ",upperdir=" + at + "/" + Basename(upper) + ",workdir=" + at + "/" + Basename(work);
  }
  if (!extra.empty()) data += "," + extra;
  unsigned long flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | (info[7].As<Napi::Boolean>().Value() ? MS_RDONLY : 0);
  if (!MountAs(creator, target, data, flags, f)) Throw(env, f);
  return env.Undefined();
}

// idmapCheck(path, usernsFd): throws the kernel's error when `path` (its mount alone) cannot be id-mapped with the
// namespace's mapping, as Linux before 6.3 refuses for tmpfs; nothing is mounted either way (the copy stays
// detached and goes with its fd).
Napi::Value Check(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsString() || !IsFd(info[1])) {
    Napi::TypeError::New(env, "idmapCheck(path: string, usernsFd: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Failure f{};
  Fd tree(IdmappedClone(info[0].As<Napi::String>().Utf8Value(), static_cast<int>(info[1].As<Napi::Number>().Uint32Value()), false, 0, 0, f));
  if (tree.get() < 0) Throw(env, f);
  return env.Undefined();
}

}  // namespace

void InitIdmap(Napi::Env env, Napi::Object exports) {
  exports.Set("idmapCheck", Napi::Function::New(env, Check));
  exports.Set("idmapUserns", Napi::Function::New(env, Userns));
  exports.Set("idmapBind", Napi::Function::New(env, Bind));
  exports.Set("idmapOverlay", Napi::Function::New(env, Overlay));
}

}  // namespace vrun
