// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON header {"name": {"dtype", "shape", "data_offsets": [b, e]},
// "__metadata__": {...}}, then the data; offsets are relative to the start of the data.
//
// SafetensorsFile memory-maps one file read-only and validates everything at open(): header
// length against the file size, the JSON, each dtype (BF16, F16, F32 only), each shape, and each
// data_offsets range (inside the file, size == numel * dtype size). Errors name the file and
// the tensor. Tensor views point into the mapping, which lives as long as the object.
//
// Thread safety: immutable after open(); safe to share.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "embed/model/weights.h"

namespace qsearch {

// "BF16" / "F16" / "F32" (safetensors spelling) -> DType.
std::optional<DType> dtype_from_safetensors_name(std::string_view name);
const char* dtype_safetensors_name(DType t);

class SafetensorsFile {
 public:
  static StatusOr<std::unique_ptr<SafetensorsFile>> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  size_t file_size() const { return size_; }
  // nullptr when the file has no tensor of that exact name.
  const TensorView* find(std::string_view name) const;
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::vector<TensorView> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: data points to numel(shape) * dtype_size(dtype) bytes.
struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
};

// The header bytes (8-byte length + JSON, padded with spaces to a multiple of 8) for tensors
// stored back to back in the given order; data follows. For writers that stream the data.
std::string safetensors_header(const std::vector<SafetensorsTensor>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

// Writes a safetensors file (header padded with spaces to a multiple of 8, tensors in the
// given order, back to back). For the test-model generator and tests.
Status write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace qsearch
