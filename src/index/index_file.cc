#include "index/index_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace qsearch {
namespace {

constexpr char kMagic[8] = {'Q', 'S', 'I', 'D', 'X', 'F', '0', '1'};
constexpr size_t kHeaderBytes = 8 + 8 * 4;

Status errno_status(const std::string& what) {
  return io_error(what + ": " + std::strerror(errno));
}

Status write_all(int fd, const char* data, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno_status("writing " + path);
    }
    data += w;
    n -= static_cast<size_t>(w);
  }
  return Status::ok();
}

void put_u64(std::string* out, uint64_t v) { out->append(reinterpret_cast<const char*>(&v), 8); }
uint64_t get_u64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

Status fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_status("opening directory " + dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return errno_status("fsync of directory " + dir);
  return Status::ok();
}

}  // namespace

uint64_t index_checksum(std::string_view bytes) {
  const uint64_t k1 = 0x9E3779B185EBCA87ULL, k2 = 0xC2B2AE3D27D4EB4FULL;
  uint64_t h = 0x165667B19E3779F9ULL ^ bytes.size();
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h ^= w * k2;
    h = ((h << 31) | (h >> 33)) * k1;
  }
  for (; i < bytes.size(); ++i) {
    h ^= static_cast<uint8_t>(bytes[i]) * k1;
    h = ((h << 11) | (h >> 53)) * k2;
  }
  h ^= h >> 33;
  h *= k2;
  h ^= h >> 29;
  return h;
}

Status write_index_file(const std::string& path, const IndexFileHeader& header,
                        std::string_view payload) {
  std::string head(kMagic, sizeof(kMagic));
  put_u64(&head, header.collection_id);
  put_u64(&head, header.sequence);
  put_u64(&head, payload.size());
  put_u64(&head, index_checksum(payload));
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_status("creating " + tmp);
  Status s = write_all(fd, head.data(), head.size(), tmp);
  if (s.is_ok()) s = write_all(fd, payload.data(), payload.size(), tmp);
  if (s.is_ok() && ::fsync(fd) != 0) s = errno_status("fsync of " + tmp);
  if (::close(fd) != 0 && s.is_ok()) s = errno_status("closing " + tmp);
  if (!s.is_ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Status r = errno_status("renaming " + tmp + " to " + path);
    ::unlink(tmp.c_str());
    return r;
  }
  return fsync_dir(std::filesystem::path(path).parent_path().string());
}

Status read_index_file(const std::string& path, IndexFileHeader* header, std::string* payload) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return not_found("no index file " + path);
    return errno_status("opening " + path);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    Status s = errno_status("stat of " + path);
    ::close(fd);
    return s;
  }
  std::string data(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t r = ::read(fd, data.data() + got, data.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  if (got != data.size()) return io_error("short read of " + path);
  if (data.size() < kHeaderBytes || std::memcmp(data.data(), kMagic, sizeof(kMagic)) != 0) {
    return corruption(path + " is not a qsearch index file");
  }
  header->collection_id = get_u64(data.data() + 8);
  header->sequence = get_u64(data.data() + 16);
  const uint64_t size = get_u64(data.data() + 24);
  const uint64_t sum = get_u64(data.data() + 32);
  if (size != data.size() - kHeaderBytes) return corruption(path + " has the wrong size");
  std::string_view body(data.data() + kHeaderBytes, size);
  if (index_checksum(body) != sum) return corruption(path + " fails its checksum");
  data.erase(0, kHeaderBytes);
  *payload = std::move(data);
  return Status::ok();
}

}  // namespace qsearch
