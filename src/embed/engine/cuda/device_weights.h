// Qwen3 weights on one GPU, in the layout the CUDA engine's kernels and GEMMs read.
//
//   embed      [vocab, hidden] bf16
//   per layer  qkv [q_width + 2 kv_width, hidden] bf16 (q_proj, k_proj, v_proj stacked by rows),
//              o [hidden, q_width], gate_up [2 inter, hidden] (gate_proj rows, then up_proj),
//              down [hidden, inter] bf16; input/post-attention norms [hidden], q/k norms [128] fp32
//   norm       [hidden] fp32 (final RMSNorm), inv_freq [head_dim / 2] fp32 (RoPE)
//
// All matrices live in one allocation (bf16), all vectors in another (fp32). f16 and f32
// checkpoints are converted to bf16 on the host while uploading; bf16 tensors are copied straight
// from the memory-mapped file.
#pragma once

#include <cstdint>
#include <vector>

#include "common.cuh"
#include "embed/model/config.h"
#include "embed/model/weights.h"

namespace qsearch {

struct DeviceLayer {
  bf16* qkv = nullptr;
  bf16* o = nullptr;
  bf16* gate_up = nullptr;
  bf16* down = nullptr;
  float* input_norm = nullptr;
  float* post_norm = nullptr;
  float* q_norm = nullptr;
  float* k_norm = nullptr;
};

class DeviceWeights {
 public:
  DeviceWeights() = default;
  ~DeviceWeights();
  DeviceWeights(const DeviceWeights&) = delete;
  DeviceWeights& operator=(const DeviceWeights&) = delete;

  // Bytes the weights of config take on the GPU.
  static int64_t bytes_needed(const ModelConfig& config);

  // Allocates on the current device (kResourceExhausted when it does not fit).
  Status allocate(const ModelConfig& config);
  // Copies a loaded checkpoint in (after allocate()).
  Status upload(const ModelWeights& weights, cudaStream_t stream);
  // Random weights for benchmarks: matrices ~ N(0, 0.02) drawn on the GPU, norms 1 (as
  // transformers initialises a fresh Qwen3Model).
  Status randomize(uint64_t seed, cudaStream_t stream);

  int64_t bytes() const { return bytes_; }
  const bf16* embed() const { return embed_; }
  const DeviceLayer& layer(int i) const { return layers_[i]; }
  const float* norm() const { return norm_; }
  const float* inv_freq() const { return inv_freq_; }

 private:
  ModelConfig config_;
  bf16* matrices_ = nullptr;
  float* vectors_ = nullptr;
  int64_t matrix_elems_ = 0, vector_elems_ = 0, bytes_ = 0;
  bf16* embed_ = nullptr;
  std::vector<DeviceLayer> layers_;
  float* norm_ = nullptr;
  float* inv_freq_ = nullptr;
};

}  // namespace qsearch
