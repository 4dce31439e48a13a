#include "dedup/embedding_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace qsearch {
namespace fs = std::filesystem;
namespace {

constexpr char kMagic[8] = {'Q', 'S', 'E', 'M', 'B', 'E', 'D', '1'};
constexpr uint32_t kVersion = 1;

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// "size mtime_ns" of a file, or NotFound.
StatusOr<std::string> file_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return not_found(path + ": " + std::strerror(errno));
  const int64_t mtime_ns =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return std::to_string(static_cast<int64_t>(st.st_size)) + " " + std::to_string(mtime_ns);
}

std::string real_path(const std::string& p) {
  std::error_code ec;
  fs::path r = fs::canonical(p, ec);
  return ec ? p : r.string();
}

Status write_all(int fd, const void* data, size_t bytes, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t w = ::write(fd, p, bytes);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return io_error("writing " + path + ": " + std::strerror(errno));
    p += w;
    bytes -= static_cast<size_t>(w);
  }
  return Status::ok();
}

Status read_all(int fd, void* data, size_t bytes, const std::string& path) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t r = ::read(fd, p, bytes);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return io_error("reading " + path + ": " + std::strerror(errno));
    if (r == 0) return corruption(path + " is truncated");
    p += r;
    bytes -= static_cast<size_t>(r);
  }
  return Status::ok();
}

}  // namespace

uint64_t embedding_checksum(const float* data, size_t count) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(data);
  const size_t bytes = count * sizeof(float);
  constexpr uint64_t kPrime = 0x9E3779B185EBCA87ULL;
  uint64_t h[4] = {0x9E3779B97F4A7C15ULL, 0xC2B2AE3D27D4EB4FULL, 0x165667B19E3779F9ULL,
                   0x27D4EB2F165667C5ULL};
  size_t k = 0;
  for (; k + 32 <= bytes; k += 32) {
    for (int lane = 0; lane < 4; ++lane) {  // four independent lanes keep the CPU busy
      uint64_t w;
      std::memcpy(&w, p + k + 8 * lane, 8);
      h[lane] ^= w;
      h[lane] = ((h[lane] << 31) | (h[lane] >> 33)) * kPrime;
    }
  }
  for (; k < bytes; ++k) h[0] = (h[0] ^ p[k]) * kPrime;
  uint64_t r = bytes;
  for (uint64_t x : h) {
    r = (r ^ x) * kPrime;
    r ^= r >> 29;
  }
  return r;
}

StatusOr<std::string> embedding_cache_key(const EmbeddingCacheKeyInputs& in) {
  std::string key = "qsearch dedup embeddings v1\n";
  const std::string model = real_path(in.model_dir);
  std::error_code ec;
  if (!fs::is_directory(model, ec))
    return not_found("model directory " + in.model_dir + " does not exist");
  key += "model=" + model + "\n";
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(model, ec))
    if (e.is_regular_file(ec)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    QS_ASSIGN_OR_RETURN(std::string stamp, file_stamp(model + "/" + name));
    key += "model_file=" + name + " " + stamp + "\n";
  }
  const std::string input = real_path(in.input_path);
  auto stamp = file_stamp(input);
  if (!stamp.is_ok()) return not_found("input file " + in.input_path + " does not exist");
  key += "input=" + input + " " + *stamp + "\n";
  key += "text_field=" + nlohmann::json(in.text_field).dump() + "\n";
  key += "id_field=" + nlohmann::json(in.id_field).dump() + "\n";
  key += "dim=" + std::to_string(in.dim) + "\n";
  key += "instruction=" + nlohmann::json(in.instruction).dump() + "\n";
  key += "max_tokens=" + std::to_string(in.max_tokens) + "\n";
  return key;
}

std::string embedding_cache_file(const std::string& dir, const std::string& input_path,
                                 const std::string& key) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(fnv1a(key)));
  return (fs::path(dir) / (fs::path(input_path).filename().string() + "." + hex + ".qemb"))
      .string();
}

std::string default_embedding_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return std::string(xdg) + "/qsearch/dedup";
  if (const char* home = std::getenv("HOME"); home && *home)
    return std::string(home) + "/.cache/qsearch/dedup";
  return ".qsearch-cache";
}

Status load_embedding_cache(const std::string& path, const std::string& key, int64_t n, int dim,
                            std::vector<float>* data) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return not_found("no embedding cache at " + path);
    return io_error("cannot open " + path + ": " + std::strerror(errno));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  char magic[8];
  uint32_t version = 0, key_len = 0;
  QS_RETURN_IF_ERROR(read_all(fd, magic, sizeof(magic), path));
  QS_RETURN_IF_ERROR(read_all(fd, &version, sizeof(version), path));
  QS_RETURN_IF_ERROR(read_all(fd, &key_len, sizeof(key_len), path));
  if (std::memcmp(magic, kMagic, sizeof(magic)) != 0 || version != kVersion)
    return corruption(path + " is not a qsearch embedding cache (version " +
                      std::to_string(kVersion) + ")");
  if (key_len != key.size()) return corruption(path + " was made for other inputs");
  std::string stored(key_len, '\0');
  QS_RETURN_IF_ERROR(read_all(fd, stored.data(), key_len, path));
  if (stored != key) return corruption(path + " was made for other inputs");
  uint64_t file_n = 0, checksum = 0;
  uint32_t file_dim = 0, zero = 0;
  QS_RETURN_IF_ERROR(read_all(fd, &file_n, sizeof(file_n), path));
  QS_RETURN_IF_ERROR(read_all(fd, &file_dim, sizeof(file_dim), path));
  QS_RETURN_IF_ERROR(read_all(fd, &zero, sizeof(zero), path));
  QS_RETURN_IF_ERROR(read_all(fd, &checksum, sizeof(checksum), path));
  if (static_cast<int64_t>(file_n) != n || static_cast<int>(file_dim) != dim)
    return corruption(path + " holds " + std::to_string(file_n) + " x " + std::to_string(file_dim) +
                      " vectors, expected " + std::to_string(n) + " x " + std::to_string(dim));
  const size_t count = static_cast<size_t>(n) * static_cast<size_t>(dim);
  struct stat st {};
  const size_t header = sizeof(magic) + 8 + key_len + 24;
  if (::fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) != header + count * sizeof(float))
    return corruption(path + " has the wrong size");
  data->resize(count);
  QS_RETURN_IF_ERROR(read_all(fd, data->data(), count * sizeof(float), path));
  if (embedding_checksum(data->data(), count) != checksum)
    return corruption(path + " is damaged (checksum mismatch)");
  return Status::ok();
}

Status save_embedding_cache(const std::string& path, const std::string& key, int64_t n, int dim,
                            const float* data, const std::atomic<bool>* cancel) {
  std::error_code ec;
  const fs::path target(path);
  if (target.has_parent_path()) fs::create_directories(target.parent_path(), ec);
  if (ec) return io_error("cannot create " + target.parent_path().string() + ": " + ec.message());
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("cannot create " + tmp + ": " + std::strerror(errno));
  auto fail = [&](Status s) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  };
  const size_t count = static_cast<size_t>(n) * static_cast<size_t>(dim);
  const uint32_t version = kVersion, key_len = static_cast<uint32_t>(key.size());
  const uint64_t file_n = static_cast<uint64_t>(n);
  const uint32_t file_dim = static_cast<uint32_t>(dim), zero = 0;
  const uint64_t checksum = embedding_checksum(data, count);
  std::string header(kMagic, sizeof(kMagic));
  header.append(reinterpret_cast<const char*>(&version), 4);
  header.append(reinterpret_cast<const char*>(&key_len), 4);
  header.append(key);
  header.append(reinterpret_cast<const char*>(&file_n), 8);
  header.append(reinterpret_cast<const char*>(&file_dim), 4);
  header.append(reinterpret_cast<const char*>(&zero), 4);
  header.append(reinterpret_cast<const char*>(&checksum), 8);
  if (Status s = write_all(fd, header.data(), header.size(), tmp); !s.is_ok()) return fail(s);
  const size_t piece = size_t{64} << 20;  // bytes between cancel checks
  const char* bytes = reinterpret_cast<const char*>(data);
  const size_t total = count * sizeof(float);
  for (size_t off = 0; off < total; off += piece) {
    if (cancel != nullptr && cancel->load()) return fail(cancelled("interrupted"));
    if (Status s = write_all(fd, bytes + off, std::min(piece, total - off), tmp); !s.is_ok())
      return fail(s);
  }
  if (::fsync(fd) != 0) return fail(io_error("fsync " + tmp + ": " + std::strerror(errno)));
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return io_error("closing " + tmp + ": " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    return io_error("renaming " + tmp + " to " + path + ": " + why);
  }
  return Status::ok();
}

}  // namespace qsearch
