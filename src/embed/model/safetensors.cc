// Memory-mapped safetensors reader and a small writer (see safetensors.h).
#include "embed/model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

namespace qsearch {
namespace {

using nlohmann::json;

// The safetensors library refuses headers over 100 MB; so do we (a corrupt length would
// otherwise make us parse garbage).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

Status parse_tensor(const std::string& path, const std::string& name, const json& v,
                    const uint8_t* data, uint64_t data_size, TensorView* t) {
  auto bad = [&](const std::string& what) {
    return corruption(path + ": tensor \"" + name + "\": " + what);
  };
  if (!v.is_object()) return bad("header entry is not an object");
  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) return bad("missing dtype");
  auto dtype = dtype_from_safetensors_name(dt->get<std::string>());
  if (!dtype) return bad("unsupported dtype " + dt->get<std::string>() + " (only BF16, F16, F32)");
  auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) return bad("missing shape");
  std::vector<int64_t> shape;
  uint64_t numel = 1;
  for (const auto& d : *sh) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0) return bad("bad shape " + sh->dump());
    uint64_t x = d.get<uint64_t>();
    if (x != 0 && numel > std::numeric_limits<uint64_t>::max() / 16 / x)
      return bad("shape " + sh->dump() + " is too large");
    numel *= x;
    shape.push_back(static_cast<int64_t>(x));
  }
  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
      !(*off)[1].is_number_unsigned())
    return bad("missing or malformed data_offsets");
  uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
  if (begin > end || end > data_size)
    return bad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
               "] outside the data section of " + std::to_string(data_size) +
               " bytes (file truncated?)");
  uint64_t expect = numel * dtype_size(*dtype);
  if (end - begin != expect)
    return bad("data_offsets span " + std::to_string(end - begin) + " bytes but shape " +
               shape_string(shape) + " of " + dtype_safetensors_name(*dtype) + " needs " +
               std::to_string(expect));
  t->name = name;
  t->file = path;
  t->dtype = *dtype;
  t->shape = std::move(shape);
  t->data = data + begin;
  return Status::ok();
}

}  // namespace

std::optional<DType> dtype_from_safetensors_name(std::string_view name) {
  if (name == "BF16") return DType::kBF16;
  if (name == "F16") return DType::kF16;
  if (name == "F32") return DType::kF32;
  return std::nullopt;
}

const char* dtype_safetensors_name(DType t) {
  switch (t) {
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kF32:
      return "F32";
  }
  return "?";
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return not_found(path + ": no such file");
    return io_error(path + ": cannot open: " + std::strerror(err));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return io_error(path + ": cannot stat: " + std::strerror(err));
  }
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ < 8) {
    ::close(fd);
    return corruption(path + ": file of " + std::to_string(f->size_) +
                      " bytes is too short for a safetensors header");
  }
  void* m = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  if (m == MAP_FAILED) return io_error(path + ": mmap failed: " + std::strerror(err));
  f->map_ = m;
  const uint8_t* base = static_cast<const uint8_t*>(m);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];  // little-endian
  if (header_len > f->size_ - 8 || header_len > kMaxHeaderBytes)
    return corruption(path + ": header length " + std::to_string(header_len) +
                      " exceeds the file size of " + std::to_string(f->size_) +
                      " bytes (truncated or not a safetensors file)");
  const char* hdr = reinterpret_cast<const char*>(base + 8);
  json header = json::parse(hdr, hdr + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object())
    return corruption(path + ": header is not a valid JSON object");
  const uint8_t* data = base + 8 + header_len;
  uint64_t data_size = f->size_ - 8 - header_len;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (it->is_object())
        for (auto m2 = it->begin(); m2 != it->end(); ++m2)
          if (m2->is_string()) f->metadata_[m2.key()] = m2->get<std::string>();
      continue;
    }
    TensorView t;
    QS_RETURN_IF_ERROR(parse_tensor(path, it.key(), it.value(), data, data_size, &t));
    f->index_[t.name] = f->tensors_.size();
    f->tensors_.push_back(std::move(t));
  }
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, size_);
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::string safetensors_header(const std::vector<SafetensorsTensor>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    uint64_t numel = 1;
    for (int64_t d : t.shape) numel *= static_cast<uint64_t>(d);
    uint64_t bytes = numel * dtype_size(t.dtype);
    header[t.name] = {{"dtype", dtype_safetensors_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  std::string out(8, '\0');
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + h;
}

Status write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::string header = safetensors_header(tensors, metadata);
  FILE* out = std::fopen(path.c_str(), "wb");
  if (!out) return io_error(path + ": cannot create: " + std::strerror(errno));
  bool ok = std::fwrite(header.data(), 1, header.size(), out) == header.size();
  for (const auto& t : tensors) {
    if (!ok) break;
    TensorView v;
    v.dtype = t.dtype;
    v.shape = t.shape;
    size_t bytes = v.nbytes();
    ok = bytes == 0 || std::fwrite(t.data, 1, bytes, out) == bytes;
  }
  if (std::fclose(out) != 0) ok = false;
  if (!ok) return io_error(path + ": write failed");
  return Status::ok();
}

}  // namespace qsearch
