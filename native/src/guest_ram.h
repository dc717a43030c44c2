#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace vrun {

// Guest RAM: one memfd, mapped once MAP_SHARED. The memfd can be handed to vhost-user backends
// (virtiofsd) so they map the very same pages. The mapping lives as long as any owner (the VM or a
// JS ArrayBuffer over it) holds the shared_ptr, so JS can never touch unmapped memory.
class GuestRam {
 public:
  // Returns nullptr and sets `error` on failure; nothing is left open then.
  static std::shared_ptr<GuestRam> Create(size_t size, std::string* error);
  ~GuestRam();
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  int memfd() const { return memfd_; }
  // The fd is only needed while the VM exists; the mapping may outlive it.
  void CloseMemfd();
  // Gives the host pages behind [offset, offset + length) back (they read as zeros afterwards, in every
  // mapping of the memfd: KVM's, vhost-user backends'). Page-aligned, non-empty and inside the RAM, or it
  // fails with EINVAL without touching anything. Returns 0 or an errno.
  int Discard(uint64_t offset, uint64_t length);

 private:
  GuestRam(uint8_t* data, size_t size, int memfd) : data_(data), size_(size), memfd_(memfd) {}
  uint8_t* data_;
  size_t size_;
  int memfd_;
};

}  // namespace vrun
