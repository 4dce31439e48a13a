#include "service/model_identity.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <vector>

#include <xxhash.h>

namespace qsearch {
namespace fs = std::filesystem;

namespace {

uint64_t fnv1a(uint64_t h, std::string_view data) {
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

struct StateDeleter {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};

// Streams the file's bytes into the state; *fnv (when given) gets them byte-wise (only for the
// small config.json of the older formula).
Status hash_file(const fs::path& path, XXH3_state_t* state, std::vector<char>* buffer,
                 int64_t* bytes, uint64_t* fnv) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return io_error("opening " + path.string() + ": " + std::strerror(errno));
  for (;;) {
    const size_t n = std::fread(buffer->data(), 1, buffer->size(), f.get());
    if (n > 0) {
      XXH3_128bits_update(state, buffer->data(), n);
      *bytes += static_cast<int64_t>(n);
      if (fnv) *fnv = fnv1a(*fnv, std::string_view(buffer->data(), n));
    }
    if (n < buffer->size()) break;
  }
  if (std::ferror(f.get())) return io_error("reading " + path.string() + ": " + std::strerror(errno));
  return Status::ok();
}

void hash_u64(XXH3_state_t* state, uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));
  XXH3_128bits_update(state, b, sizeof b);
}

}  // namespace

StatusOr<ModelIdentity> compute_model_identity(const std::string& dir) {
  const auto t0 = std::chrono::steady_clock::now();
  ModelIdentity out;
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  out.name = p.filename().string();
  if (out.name.empty() || out.name == ".") out.name = fs::absolute(p).lexically_normal().filename().string();

  std::unique_ptr<XXH3_state_t, StateDeleter> state(XXH3_createState());
  if (!state || XXH3_128bits_reset(state.get()) != XXH_OK)
    return internal_error("xxHash: cannot create a hash state");
  std::vector<char> buffer(4 << 20);
  uint64_t legacy = 14695981039346656037ULL;
  // config.json: absent hashes as empty (check_model_dir() requires it before a server starts).
  const fs::path config = fs::path(dir) / "config.json";
  std::error_code ec;
  XXH3_128bits_update(state.get(), "config.json", 11);
  if (fs::exists(config, ec)) {
    int64_t config_bytes = 0;
    QS_RETURN_IF_ERROR(hash_file(config, state.get(), &buffer, &config_bytes, &legacy));
    out.bytes_hashed += config_bytes;
  }
  std::map<std::string, uintmax_t> weights;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors")
      weights[entry.path().filename().string()] = entry.file_size(ec);
  }
  if (ec) return io_error("listing " + dir + ": " + ec.message());
  for (const auto& [file, size] : weights) {
    legacy = fnv1a(fnv1a(legacy, file), std::to_string(size));
    // Name and size framed before the contents, so no two file lists hash alike.
    hash_u64(state.get(), file.size());
    XXH3_128bits_update(state.get(), file.data(), file.size());
    hash_u64(state.get(), size);
    int64_t n = 0;
    QS_RETURN_IF_ERROR(hash_file(fs::path(dir) / file, state.get(), &buffer, &n, nullptr));
    if (static_cast<uintmax_t>(n) != size)
      return io_error((fs::path(dir) / file).string() + " changed size while it was hashed");
    out.bytes_hashed += n;
  }
  const XXH128_hash_t h = XXH3_128bits_digest(state.get());
  char hex[33];
  std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  out.identity = out.name + "@" + hex;
  char legacy_hex[17];
  std::snprintf(legacy_hex, sizeof legacy_hex, "%016llx", static_cast<unsigned long long>(legacy));
  out.legacy_identity = out.name + "@" + legacy_hex;
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace qsearch
