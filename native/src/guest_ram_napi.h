#pragma once
#include <napi.h>

#include <memory>

#include "guest_ram.h"

namespace vrun {
// discard(offset, length) for a JS object that owns guest RAM: arguments checked, errors thrown as errno errors.
Napi::Value DiscardGuestRam(const Napi::CallbackInfo& info, const std::shared_ptr<GuestRam>& ram);

// Exports GuestRam: guest RAM (one memfd, mapped shared) without a VM, for the device models' tests and for
// measuring what discarding gives back: new GuestRam(bytes), memory(), memfd(), discard(offset, length).
void InitGuestRam(Napi::Env env, Napi::Object exports);
}  // namespace vrun
