#include "kvm_system.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstddef>
#include <string>

namespace vrun {
namespace {

// Opens the KVM device; on failure throws a JS error that names the path and errno so the
// caller can tell "no module loaded" (ENOENT) from "not permitted" (EACCES).
int OpenKvm(Napi::Env env, const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    Napi::Error e = Napi::Error::New(env, "cannot open " + path + ": " + strerror(err));
    e.Set("code", Napi::String::New(env, err == ENOENT ? "ENOENT" : err == EACCES ? "EACCES" : "EKVMOPEN"));
    e.Set("errno", Napi::Number::New(env, err));
    e.ThrowAsJavaScriptException();
  }
  return fd;
}

std::string DevicePath(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsString()) return info[0].As<Napi::String>().Utf8Value();
  return "/dev/kvm";
}

Napi::Value ApiVersion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = OpenKvm(env, DevicePath(info));
  if (fd < 0) return env.Undefined();
  int version = ioctl(fd, KVM_GET_API_VERSION, 0);
  int err = errno;
  close(fd);
  if (version < 0) {
    Napi::Error::New(env, std::string("KVM_GET_API_VERSION failed: ") + strerror(err)).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, version);
}

Napi::Value CheckExtension(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "checkExtension(cap: number, path?: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int cap = info[0].As<Napi::Number>().Int32Value();
  std::string path = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "/dev/kvm";
  int fd = OpenKvm(env, path);
  if (fd < 0) return env.Undefined();
  int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);
  close(fd);
  return Napi::Number::New(env, r < 0 ? 0 : r);
}

// The sizes of the KVM structs the VM binding passes to JS raw, so the TS encoders can be checked
// against this build's <linux/kvm.h> on any host.
Napi::Value StructSizes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("regs", Napi::Number::New(env, sizeof(kvm_regs)));
  o.Set("sregs", Napi::Number::New(env, sizeof(kvm_sregs)));
  o.Set("fpu", Napi::Number::New(env, sizeof(kvm_fpu)));
  o.Set("lapic", Napi::Number::New(env, sizeof(kvm_lapic_state)));
  o.Set("cpuidEntry", Napi::Number::New(env, sizeof(kvm_cpuid_entry2)));
  o.Set("msrEntry", Napi::Number::New(env, sizeof(kvm_msr_entry)));
  o.Set("segment", Napi::Number::New(env, sizeof(kvm_segment)));
  o.Set("sregsCr0", Napi::Number::New(env, offsetof(kvm_sregs, cr0)));
  o.Set("sregsGdt", Napi::Number::New(env, offsetof(kvm_sregs, gdt)));
  o.Set("sregsEfer", Napi::Number::New(env, offsetof(kvm_sregs, efer)));
  o.Set("fpuMxcsr", Napi::Number::New(env, offsetof(kvm_fpu, mxcsr)));
  o.Set("fpuFcw", Napi::Number::New(env, offsetof(kvm_fpu, fcw)));
  return o;
}

}  // namespace

void InitKvmSystem(Napi::Env env, Napi::Object exports) {
  exports.Set("kvmStructSizes", Napi::Function::New(env, StructSizes));
  exports.Set("kvmApiVersion", Napi::Function::New(env, ApiVersion));
  exports.Set("kvmCheckExtension", Napi::Function::New(env, CheckExtension));
}

}  // namespace vrun
