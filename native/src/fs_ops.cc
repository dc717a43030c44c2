#include "fs_ops.h"

#include "errno_error.h"

#include <errno.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <string>
#include <utility>
#include <vector>

namespace vrun {
namespace {

bool ArgsOk(const Napi::CallbackInfo& info, const char* usage, std::initializer_list<napi_valuetype> types) {
  size_t i = 0;
  for (napi_valuetype t : types) {
    if (info.Length() <= i || info[i].Type() != t) {
      Napi::TypeError::New(info.Env(), usage).ThrowAsJavaScriptException();
      return false;
    }
    i++;
  }
  return true;
}

// fsMknod(path, mode, major, minor): mode carries the file type bits (S_IFCHR, S_IFIFO, ...).
Napi::Value Mknod(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsMknod(path: string, mode: number, major: number, minor: number)",
              {napi_string, napi_number, napi_number, napi_number})) {
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  mode_t mode = static_cast<mode_t>(info[1].As<Napi::Number>().Uint32Value());
  dev_t dev = makedev(info[2].As<Napi::Number>().Uint32Value(), info[3].As<Napi::Number>().Uint32Value());
  if (mknod(path.c_str(), mode, dev) != 0) ThrowErrno(env, errno, "mknod", path);
  return env.Undefined();
}

// fsLsetxattr(path, name, value): never follows a final symlink.
Napi::Value Lsetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsLsetxattr(path: string, name: string, value: Buffer)", {napi_string, napi_string}) ||
      info.Length() < 3 || !info[2].IsBuffer()) {
    if (!env.IsExceptionPending()) {
      Napi::TypeError::New(env, "fsLsetxattr(path: string, name: string, value: Buffer)").ThrowAsJavaScriptException();
    }
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  Napi::Buffer<uint8_t> value = info[2].As<Napi::Buffer<uint8_t>>();
  if (lsetxattr(path.c_str(), name.c_str(), value.Data(), value.Length(), 0) != 0) {
    ThrowErrno(env, errno, "lsetxattr", path);
  }
  return env.Undefined();
}

// fsLgetxattr(path, name): the value, or null when the attribute is absent.
Napi::Value Lgetxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsLgetxattr(path: string, name: string)", {napi_string, napi_string})) return env.Undefined();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string name = info[1].As<Napi::String>().Utf8Value();
  for (int attempt = 0; attempt < 4; attempt++) {
    ssize_t size = lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
    if (size < 0) {
      if (errno == ENODATA) return env.Null();
      ThrowErrno(env, errno, "lgetxattr", path);
      return env.Undefined();
    }
    std::vector<uint8_t> buf(static_cast<size_t>(size));
    ssize_t got = lgetxattr(path.c_str(), name.c_str(), buf.data(), buf.size());
    if (got >= 0) return Napi::Buffer<uint8_t>::Copy(env, buf.data(), static_cast<size_t>(got));
    if (errno != ERANGE) {
      ThrowErrno(env, errno, "lgetxattr", path);
      return env.Undefined();
    }
  }
  ThrowErrno(env, ERANGE, "lgetxattr", path);
  return env.Undefined();
}

// fsLlistxattr(path): attribute names.
Napi::Value Llistxattr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsLlistxattr(path: string)", {napi_string})) return env.Undefined();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  for (int attempt = 0; attempt < 4; attempt++) {
    ssize_t size = llistxattr(path.c_str(), nullptr, 0);
    if (size < 0) {
      ThrowErrno(env, errno, "llistxattr", path);
      return env.Undefined();
    }
    std::vector<char> buf(static_cast<size_t>(size));
    ssize_t got = llistxattr(path.c_str(), buf.data(), buf.size());
    if (got < 0 && errno == ERANGE) continue;
    if (got < 0) {
      ThrowErrno(env, errno, "llistxattr", path);
      return env.Undefined();
    }
    Napi::Array names = Napi::Array::New(env);
    uint32_t n = 0;
    for (ssize_t i = 0; i < got;) {
      std::string one(buf.data() + i);
      i += static_cast<ssize_t>(one.size()) + 1;
      if (!one.empty()) names.Set(n++, Napi::String::New(env, one));
    }
    return names;
  }
  ThrowErrno(env, ERANGE, "llistxattr", path);
  return env.Undefined();
}

// fsFlock(fd, exclusive, wait): never blocks the event loop unless asked to; returns false when
// the lock is held elsewhere and wait is false. The kernel drops the lock when the process dies,
// which is what makes it safe against killed commands.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsFlock(fd: number, exclusive: boolean, wait: boolean)", {napi_number, napi_boolean, napi_boolean})) {
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  int op = info[1].As<Napi::Boolean>().Value() ? LOCK_EX : LOCK_SH;
  if (!info[2].As<Napi::Boolean>().Value()) op |= LOCK_NB;
  while (flock(fd, op) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "flock", "fd " + std::to_string(fd));
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

// fsFunlock(fd)
Napi::Value Funlock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ArgsOk(info, "fsFunlock(fd: number)", {napi_number})) return env.Undefined();
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (flock(fd, LOCK_UN) != 0) ThrowErrno(env, errno, "flock", "fd " + std::to_string(fd));
  return env.Undefined();
}

// mount(2) on libuv's thread pool. The agent mounts virtio-fs shares with it: a process per mount (busybox
// mount) cost 50-70 ms each under TCG, and a virtio-fs mount waits for virtiofsd's answer, which must not stall
// the event loop if virtiofsd is gone.
class MountWorker : public Napi::AsyncWorker {
 public:
  MountWorker(Napi::Env env, std::string source, std::string target, std::string fstype, unsigned long flags, std::string data)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        source_(std::move(source)),
        target_(std::move(target)),
        fstype_(std::move(fstype)),
        flags_(flags),
        data_(std::move(data)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    if (mount(source_.empty() ? nullptr : source_.c_str(), target_.c_str(), fstype_.empty() ? nullptr : fstype_.c_str(), flags_,
              data_.empty() ? nullptr : data_.c_str()) != 0) {
      err_ = errno;
    }
  }

  void OnOK() override {
    if (err_ == 0) {
      deferred_.Resolve(Env().Undefined());
    } else {
      deferred_.Reject(ErrnoError(Env(), err_, "mount", target_).Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string source_;
  std::string target_;
  std::string fstype_;
  unsigned long flags_;
  std::string data_;
  int err_ = 0;
};

// fsMount(source, target, fstype, flags: string[], data): Promise<void>. Empty source, fstype or data pass NULL;
// flags are names ("bind", "remount", "rdonly", "nosuid", "nodev", "noexec", "rec", "move", "private", "shared",
// "slave"), anything else is refused.
Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "fsMount(source: string, target: string, fstype: string, flags: string[], data: string)";
  if (!ArgsOk(info, usage, {napi_string, napi_string, napi_string, napi_object, napi_string}) || !info[3].IsArray()) {
    if (!env.IsExceptionPending()) Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  static const std::pair<const char*, unsigned long> kFlags[] = {
      {"bind", MS_BIND}, {"remount", MS_REMOUNT}, {"rdonly", MS_RDONLY},   {"nosuid", MS_NOSUID}, {"nodev", MS_NODEV}, {"noexec", MS_NOEXEC},
      {"rec", MS_REC},   {"move", MS_MOVE},       {"private", MS_PRIVATE}, {"shared", MS_SHARED}, {"slave", MS_SLAVE}};
  unsigned long flags = 0;
  Napi::Array names = info[3].As<Napi::Array>();
  for (uint32_t i = 0; i < names.Length(); i++) {
    Napi::Value v = names.Get(i);
    std::string name = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    bool known = false;
    for (const auto& [flag_name, bit] : kFlags) {
      if (name == flag_name) {
        flags |= bit;
        known = true;
      }
    }
    if (!known) {
      Napi::TypeError::New(env, std::string("fsMount: unknown mount flag \"") + name + "\"").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  std::string target = info[1].As<Napi::String>().Utf8Value();
  if (target.empty()) {
    Napi::TypeError::New(env, "fsMount: empty target").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new MountWorker(env, info[0].As<Napi::String>().Utf8Value(), target, info[2].As<Napi::String>().Utf8Value(), flags,
                                 info[4].As<Napi::String>().Utf8Value());
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

class UmountWorker : public Napi::AsyncWorker {
 public:
  UmountWorker(Napi::Env env, std::string target, int flags)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), target_(std::move(target)), flags_(flags) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    if (umount2(target_.c_str(), flags_) != 0) err_ = errno;
  }

  void OnOK() override {
    if (err_ == 0) {
      deferred_.Resolve(Env().Undefined());
    } else {
      deferred_.Reject(ErrnoError(Env(), err_, "umount2", target_).Value());
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string target_;
  int flags_;
  int err_ = 0;
};

// fsUmount(target, detach: boolean): Promise<void>. detach is MNT_DETACH (a lazy unmount); symlinks in the
// last component are never followed (UMOUNT_NOFOLLOW).
Napi::Value Umount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "fsUmount(target: string, detach: boolean)";
  if (!ArgsOk(info, usage, {napi_string, napi_boolean})) {
    if (!env.IsExceptionPending()) Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string target = info[0].As<Napi::String>().Utf8Value();
  if (target.empty()) {
    Napi::TypeError::New(env, "fsUmount: empty target").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int flags = UMOUNT_NOFOLLOW | (info[1].As<Napi::Boolean>().Value() ? MNT_DETACH : 0);
  auto* worker = new UmountWorker(env, target, flags);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

}  // namespace

void InitFsOps(Napi::Env env, Napi::Object exports) {
  exports.Set("fsUmount", Napi::Function::New(env, Umount));
  exports.Set("fsMknod", Napi::Function::New(env, Mknod));
  exports.Set("fsLsetxattr", Napi::Function::New(env, Lsetxattr));
  exports.Set("fsLgetxattr", Napi::Function::New(env, Lgetxattr));
  exports.Set("fsLlistxattr", Napi::Function::New(env, Llistxattr));
  exports.Set("fsFlock", Napi::Function::New(env, Flock));
  exports.Set("fsFunlock", Napi::Function::New(env, Funlock));
  exports.Set("fsMount", Napi::Function::New(env, Mount));
}

}  // namespace vrun
