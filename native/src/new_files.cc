#include "new_files.h"

#include "errno_error.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

namespace vrun {
namespace {

// Past this many iovecs a writev is split; Linux refuses more than IOV_MAX (1024) in one call.
constexpr size_t kMaxIov = 1024;
constexpr uint32_t kMaxFilesPerBatch = 4096;

struct NewFile {
  std::string path;
  std::vector<std::pair<const uint8_t*, size_t>> data;
  mode_t mode = 0644;
  bool chown = false;
  uid_t uid = 0;
  gid_t gid = 0;
  timespec mtime{};
  std::vector<std::pair<std::string, std::pair<const uint8_t*, size_t>>> xattrs;
};

// Creates a batch of new regular files on libuv's thread pool, each with its data, owner, mode, xattrs and
// mtime, in one job: unpacking a layer of small files costs a thread hand-off per batch instead of three per
// file. Every file is created with O_CREAT|O_EXCL|O_NOFOLLOW, so an existing name (or a symlink planted in its
// place) fails the batch instead of being written through; the caller checked the parents. The first failure
// ends the batch: later files are not created.
class WriteNewFilesWorker : public Napi::AsyncWorker {
 public:
  WriteNewFilesWorker(Napi::Env env, std::vector<NewFile> files, Napi::Object keep)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), files_(std::move(files)) {
    // The Buffers behind the data pointers stay alive (and unmoved: their backing stores are fixed) until OnOK/OnError.
    keep_ = Napi::Persistent(keep);
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    for (const NewFile& f : files_) {
      if (!WriteOne(f)) return;
    }
  }

  void OnOK() override {
    keep_.Reset();
    if (err_ == 0) {
      deferred_.Resolve(Env().Undefined());
      return;
    }
    deferred_.Reject(ErrnoError(Env(), err_, syscall_, err_path_).Value());
  }

 private:
  bool Fail(const NewFile& f, const char* syscall, int fd) {
    err_ = errno;
    syscall_ = syscall;
    err_path_ = f.path;
    if (fd >= 0) close(fd);
    return false;
  }

  bool WriteOne(const NewFile& f) {
    int fd = open(f.path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return Fail(f, "open", -1);
    std::vector<iovec> iov;
    iov.reserve(f.data.size());
    for (const auto& [ptr, len] : f.data) {
      if (len > 0) iov.push_back(iovec{const_cast<uint8_t*>(ptr), len});
    }
    size_t first = 0;
    while (first < iov.size()) {
      int count = static_cast<int>(std::min(kMaxIov, iov.size() - first));
      ssize_t n = writev(fd, iov.data() + first, count);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Fail(f, "writev", fd);
      }
      // A short write: skip what went out and go on from the first byte not written.
      size_t left = static_cast<size_t>(n);
      while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
      if (left > 0) {
        iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
      }
    }
    // Owner before mode: chown clears set-user-id and set-group-id bits the mode may carry.
    if (f.chown && fchown(fd, f.uid, f.gid) != 0) return Fail(f, "fchown", fd);
    if (fchmod(fd, f.mode) != 0) return Fail(f, "fchmod", fd);
    for (const auto& [name, value] : f.xattrs) {
      if (fsetxattr(fd, name.c_str(), value.first, value.second, 0) != 0) return Fail(f, "fsetxattr", fd);
    }
    const timespec times[2] = {f.mtime, f.mtime};
    if (futimens(fd, times) != 0) return Fail(f, "futimens", fd);
    if (close(fd) != 0) {
      fd = -1;
      return Fail(f, "close", -1);
    }
    return true;
  }

  Napi::Promise::Deferred deferred_;
  std::vector<NewFile> files_;
  Napi::ObjectReference keep_;
  int err_ = 0;
  std::string syscall_;
  std::string err_path_;
};

bool TakeString(Napi::Value v, std::string* out) {
  if (!v.IsString()) return false;
  *out = v.As<Napi::String>().Utf8Value();
  return out->find('\0') == std::string::npos && !out->empty();
}

bool TakeBuffer(Napi::Value v, std::pair<const uint8_t*, size_t>* out) {
  if (!v.IsBuffer()) return false;
  auto b = v.As<Napi::Buffer<uint8_t>>();
  *out = {b.Data(), b.Length()};
  return true;
}

bool TakeUint32(Napi::Value v, uint32_t* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d))) return false;
  *out = static_cast<uint32_t>(d);
  return true;
}

// One file from { path, data: Buffer[], mode, owner: [uid, gid] | null, mtimeSec, mtimeNsec, xattrs: [name, Buffer][] }.
bool TakeFile(Napi::Value v, NewFile* f) {
  if (!v.IsObject()) return false;
  Napi::Object o = v.As<Napi::Object>();
  if (!TakeString(o.Get("path"), &f->path)) return false;
  Napi::Value data = o.Get("data");
  if (!data.IsArray()) return false;
  Napi::Array chunks = data.As<Napi::Array>();
  f->data.resize(chunks.Length());
  for (uint32_t i = 0; i < chunks.Length(); i++) {
    if (!TakeBuffer(chunks.Get(i), &f->data[i])) return false;
  }
  uint32_t mode = 0;
  if (!TakeUint32(o.Get("mode"), &mode) || mode > 07777) return false;
  f->mode = static_cast<mode_t>(mode);
  Napi::Value owner = o.Get("owner");
  if (owner.IsArray()) {
    Napi::Array ug = owner.As<Napi::Array>();
    uint32_t uid = 0;
    uint32_t gid = 0;
    if (ug.Length() != 2 || !TakeUint32(ug.Get(0u), &uid) || !TakeUint32(ug.Get(1u), &gid)) return false;
    f->chown = true;
    f->uid = uid;
    f->gid = gid;
  } else if (!owner.IsNull() && !owner.IsUndefined()) {
    return false;
  }
  Napi::Value sec = o.Get("mtimeSec");
  if (!sec.IsNumber()) return false;
  double s = sec.As<Napi::Number>().DoubleValue();
  if (!(s >= -9.2e18 && s <= 9.2e18) || s != static_cast<double>(static_cast<int64_t>(s))) return false;
  uint32_t nsec = 0;
  if (!TakeUint32(o.Get("mtimeNsec"), &nsec) || nsec >= 1000000000u) return false;
  f->mtime = timespec{static_cast<time_t>(s), static_cast<long>(nsec)};
  Napi::Value xattrs = o.Get("xattrs");
  if (xattrs.IsArray()) {
    Napi::Array list = xattrs.As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) {
      Napi::Value pair = list.Get(i);
      if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2) return false;
      std::string name;
      std::pair<const uint8_t*, size_t> value;
      if (!TakeString(pair.As<Napi::Array>().Get(0u), &name) || !TakeBuffer(pair.As<Napi::Array>().Get(1u), &value)) return false;
      f->xattrs.emplace_back(std::move(name), value);
    }
  } else if (!xattrs.IsUndefined()) {
    return false;
  }
  return true;
}

// fsWriteNewFiles(files): Promise<void>; see WriteNewFilesWorker.
Napi::Value WriteNewFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage =
      "fsWriteNewFiles(files: { path: string, data: Buffer[], mode: number, owner: [uid, gid] | null, mtimeSec: number, "
      "mtimeNsec: number, xattrs?: [string, Buffer][] }[])";
  if (info.Length() < 1 || !info[0].IsArray()) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array list = info[0].As<Napi::Array>();
  if (list.Length() > kMaxFilesPerBatch) {
    Napi::RangeError::New(env, "fsWriteNewFiles: more than 4096 files in one batch").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<NewFile> files(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) {
    if (!TakeFile(list.Get(i), &files[i])) {
      if (!env.IsExceptionPending()) Napi::TypeError::New(env, std::string(usage) + ": file " + std::to_string(i) + " is malformed").ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  auto* worker = new WriteNewFilesWorker(env, std::move(files), list);
  Napi::Promise p = worker->Promise();
  worker->Queue();
  return p;
}

}  // namespace

void InitNewFiles(Napi::Env env, Napi::Object exports) {
  exports.Set("fsWriteNewFiles", Napi::Function::New(env, WriteNewFiles));
}

}  // namespace vrun
