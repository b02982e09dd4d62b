#include "guest/ivshmem_device.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <vector>

#include "ipc/ivshmem_layout.h"
#include "ipc/ivshmem_protocol.h"
#include "ipc/shared_region.h"
#include "ipc/socket.h"

namespace malv::guest {
namespace {

constexpr const char* kPciDevices = "/sys/bus/pci/devices";
constexpr std::size_t kPage = 4096;

std::optional<unsigned> read_hex_file(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text)) return std::nullopt;
  try {
    return static_cast<unsigned>(std::stoul(text, nullptr, 16));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

bool is_ivshmem(const std::string& dir) {
  return read_hex_file(dir + "/vendor") == ipc::kIvshmemPciVendor &&
         read_hex_file(dir + "/device") == ipc::kIvshmemPciDevice;
}

// The physical start of BAR `bar`, from the device's `resource` table.
std::optional<std::uint64_t> bar_start(const std::string& dir, int bar) {
  std::ifstream in(dir + "/resource");
  std::string line;
  for (int i = 0; i <= bar && std::getline(in, line); ++i) {
    if (i < bar) continue;
    try {
      return std::stoull(line, nullptr, 16);
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

// A mapping, unmapped on destruction.
struct Mapping {
  void* base = MAP_FAILED;
  std::size_t bytes = 0;
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (base != MAP_FAILED) ::munmap(base, bytes);
  }
};

Result<void*> map_file(const std::string& path, std::size_t bytes, off_t offset, Mapping& into) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return errno_error("open " + path, errno);
  void* base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  const int error = errno;
  ::close(fd);
  if (base == MAP_FAILED) return errno_error(fmt::format("mmap {} ({} bytes)", path, bytes), error);
  into.base = base;
  into.bytes = bytes;
  return base;
}

class PciIvshmemDevice final : public IvshmemDevice {
 public:
  static Result<std::unique_ptr<IvshmemDevice>> open(const std::string& dir) {
    std::unique_ptr<PciIvshmemDevice> device(new PciIvshmemDevice(dir));
    struct stat st {};
    const std::string bar2 = dir + "/resource2";
    if (::stat(bar2.c_str(), &st) != 0) {
      return errno_error(fmt::format("{} (no shared memory BAR: is this an ivshmem device?)", bar2),
                         errno);
    }
    MALV_ASSIGN_OR_RETURN(void* region,
                          map_file(bar2, static_cast<std::size_t>(st.st_size), 0, device->region_));
    device->memory_ =
        std::span(static_cast<std::byte*>(region), static_cast<std::size_t>(st.st_size));
    // BAR 0 is 256 bytes: the page holding it is mapped and the register
    // found at its offset in that page (a BAR may start mid-page). Where
    // sysfs refuses the mapping, /dev/mem at its physical address serves.
    const std::uint64_t start = bar_start(dir, 0).value_or(0);
    const std::size_t in_page = static_cast<std::size_t>(start % kPage);
    Result<void*> registers = map_file(dir + "/resource0", kPage, 0, device->registers_);
    if (!registers.ok() && start != 0) {
      registers =
          map_file("/dev/mem", kPage, static_cast<off_t>(start - in_page), device->registers_);
    }
    if (!registers.ok()) {
      return std::move(registers).error().with_context(
          "mapping the ivshmem doorbell register (BAR 0): the guest needs root, and the "
          "device must be ivshmem-doorbell, not ivshmem-plain");
    }
    device->doorbell_ = reinterpret_cast<volatile std::uint32_t*>(
        static_cast<std::byte*>(registers.value()) + in_page + ipc::kIvshmemRegDoorbell);
    return std::unique_ptr<IvshmemDevice>(std::move(device));
  }

  std::span<std::byte> region() override { return memory_; }
  void ring(std::uint32_t peer, std::uint32_t vector) override {
    *doorbell_ = (peer << 16) | (vector & 0xffff);
  }
  std::string describe() const override { return "PCI " + dir_.substr(dir_.rfind('/') + 1); }

 private:
  explicit PciIvshmemDevice(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
  Mapping region_, registers_;
  std::span<std::byte> memory_;
  volatile std::uint32_t* doorbell_ = nullptr;
};

// Stands in for QEMU: the same set-up messages, the doorbells written
// straight into the host's eventfds.
class SocketIvshmemDevice final : public IvshmemDevice {
 public:
  static Result<std::unique_ptr<IvshmemDevice>> open(const std::string& path) {
    std::unique_ptr<SocketIvshmemDevice> device(new SocketIvshmemDevice(path));
    MALV_ASSIGN_OR_RETURN(device->socket_, ipc::Socket::connect_unix(path));
    MALV_ASSIGN_OR_RETURN(
        device->setup_,
        ipc::receive_ivshmem_setup(device->socket_, 0,
                                   std::chrono::steady_clock::now() + std::chrono::seconds(5)));
    struct stat st {};
    if (::fstat(device->setup_.shm_fd, &st) != 0) return errno_error("fstat", errno);
    const int fd = ::dup(device->setup_.shm_fd);
    MALV_ASSIGN_OR_RETURN(device->shared_,
                          ipc::SharedRegion::map_fd(fd, static_cast<std::size_t>(st.st_size)));
    return std::unique_ptr<IvshmemDevice>(std::move(device));
  }

  std::span<std::byte> region() override { return {shared_.data(), shared_.size()}; }
  void ring(std::uint32_t peer, std::uint32_t vector) override {
    const auto it = setup_.peers.find(peer);
    if (it == setup_.peers.end() || vector >= it->second.size()) return;  // as QEMU: dropped
    const std::uint64_t one = 1;
    (void)!::write(it->second[vector], &one, sizeof(one));
  }
  std::string describe() const override { return "socket " + path_; }

 private:
  explicit SocketIvshmemDevice(std::string path) : path_(std::move(path)) {}
  std::string path_;
  ipc::Socket socket_;
  ipc::IvshmemClientSetup setup_;
  ipc::SharedRegion shared_;
};

bool is_socket(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

}  // namespace

std::optional<std::string> find_ivshmem_pci_device() {
  DIR* dir = ::opendir(kPciDevices);
  if (dir == nullptr) return std::nullopt;
  std::vector<std::string> found;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = std::string(kPciDevices) + "/" + name;
    if (is_ivshmem(path)) found.push_back(path);
  }
  ::closedir(dir);
  if (found.empty()) return std::nullopt;
  std::sort(found.begin(), found.end());
  return found.front();
}

Result<std::unique_ptr<IvshmemDevice>> open_ivshmem_device(const std::string& where) {
  if (where.empty()) {
    const std::optional<std::string> found = find_ivshmem_pci_device();
    if (!found) {
      return Error(ErrorCode::kNotFound,
                   fmt::format("no ivshmem PCI device (vendor {:#06x}, device {:#06x}) in {}: is "
                               "this a VM with an ivshmem-doorbell device?",
                               ipc::kIvshmemPciVendor, ipc::kIvshmemPciDevice, kPciDevices));
    }
    return PciIvshmemDevice::open(*found);
  }
  if (is_socket(where)) return SocketIvshmemDevice::open(where);
  const std::string dir =
      where.find('/') == std::string::npos ? std::string(kPciDevices) + "/" + where : where;
  if (!is_ivshmem(dir)) {
    return Error(
        ErrorCode::kNotFound,
        fmt::format("{} is neither an ivshmem PCI device nor a VM's ivshmem socket", where));
  }
  return PciIvshmemDevice::open(dir);
}

}  // namespace malv::guest
