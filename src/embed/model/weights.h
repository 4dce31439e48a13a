// Model weights from a Hugging Face directory: model.safetensors, or
// model.safetensors.index.json with shards. Files are memory-mapped; tensors are views into
// the mappings (no copies). Tensor names are accepted with or without the "model." prefix.
// Every expected tensor is checked for presence, dtype (BF16, F16, F32) and shape at open();
// an error names the file and the tensor.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "embed/model/config.h"

namespace qsearch {

enum class DType { kBF16, kF16, kF32 };
const char* dtype_name(DType t);
size_t dtype_size(DType t);

struct TensorView {
  std::string name;            // the name as stored in the file
  std::string file;            // the file it lives in
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // row-major, as stored (Linear weights are [out, in])
  const void* data = nullptr;  // into the mapping
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  // Converts to float32 / bfloat16 bits (copies).
  std::vector<float> to_float() const;
  std::vector<uint16_t> to_bf16() const;
};

struct LayerWeights {
  TensorView input_layernorm;           // [hidden]
  TensorView q_proj, k_proj, v_proj;    // [q_width, hidden], [kv_width, hidden] x2
  TensorView o_proj;                    // [hidden, q_width]
  TensorView q_norm, k_norm;            // [head_dim]
  TensorView post_attention_layernorm;  // [hidden]
  TensorView gate_proj, up_proj;        // [intermediate, hidden]
  TensorView down_proj;                 // [hidden, intermediate]
};

class SafetensorsFile;
struct TensorSource;

class ModelWeights {
 public:
  static StatusOr<std::unique_ptr<ModelWeights>> open(const std::string& model_dir,
                                                      const ModelConfig& config);
  ~ModelWeights();
  const TensorView& embed_tokens() const { return embed_tokens_; }  // [vocab, hidden]
  const LayerWeights& layer(int i) const { return layers_[i]; }
  const TensorView& norm() const { return norm_; }                  // [hidden]
  // Any other tensor by its bare name (e.g. "lm_head.weight"), checked against shape;
  // kNotFound when absent, kCorruption when its shape differs.
  StatusOr<TensorView> tensor(const std::string& name, const std::vector<int64_t>& shape) const;
  int64_t total_bytes() const;

 private:
  ModelWeights() = default;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unique_ptr<TensorSource> source_;  // name -> file, for tensor()
  TensorView embed_tokens_;
  std::vector<LayerWeights> layers_;
  TensorView norm_;
};

// bf16 <-> f32 helpers (round to nearest even), shared by the loader, engines and tests.
inline float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// IEEE half <-> f32 (round to nearest even; overflow -> inf), for F16 checkpoints.
float f16_to_float(uint16_t h);
uint16_t float_to_f16(float f);

}  // namespace qsearch
