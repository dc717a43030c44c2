#include "guest_ram.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

namespace vrun {

std::shared_ptr<GuestRam> GuestRam::Create(size_t size, std::string* error) {
  int fd = memfd_create("vrun-guest-ram", MFD_CLOEXEC);
  if (fd < 0) {
    *error = std::string("memfd_create for guest RAM failed: ") + strerror(errno);
    return nullptr;
  }
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    *error = "cannot size guest RAM to " + std::to_string(size) + " bytes: " + strerror(errno);
    close(fd);
    return nullptr;
  }
  // NORESERVE: guest RAM is committed page by page as the guest touches it.
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) {
    *error = "cannot map " + std::to_string(size) + " bytes of guest RAM: " + strerror(errno);
    close(fd);
    return nullptr;
  }
  return std::shared_ptr<GuestRam>(new GuestRam(static_cast<uint8_t*>(p), size, fd));
}

void GuestRam::CloseMemfd() {
  if (memfd_ >= 0) close(memfd_);
  memfd_ = -1;
}

int GuestRam::Discard(uint64_t offset, uint64_t length) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  if (length == 0 || offset % page != 0 || length % page != 0 || offset > size_ || length > size_ - offset) return EINVAL;
  // MADV_REMOVE on a shared memfd mapping punches the hole in the file itself, exactly as
  // fallocate(PUNCH_HOLE | KEEP_SIZE) does (measured alike), but needs no fd: it works after CloseMemfd, and
  // it can only name pages of this mapping.
  if (madvise(data_ + offset, length, MADV_REMOVE) != 0) return errno;
  return 0;
}

GuestRam::~GuestRam() {
  munmap(data_, size_);
  CloseMemfd();
}

}  // namespace vrun
