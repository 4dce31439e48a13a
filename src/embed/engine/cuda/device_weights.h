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
//
// EngineDType::kFP8: the four matrices of each layer are E4M3 (quant_fp8.cuh) in a third
// allocation, one byte per weight, with one fp32 scale per row (output channel) among the vectors:
// qkv_s [q_width + 2 kv_width], o_s [hidden], gate_up_s [2 inter], down_s [hidden]. They are
// quantized on the GPU from the bf16 values (the checkpoint's, or the random ones, which are then
// the same values the bf16 engine draws for a seed) through a staging buffer of one tensor that
// is freed afterwards; no bf16 copy is kept. The embedding table stays bf16 (a gather, no GEMM).
#pragma once

#include <cstdint>
#include <vector>

#include "common.cuh"
#include "embed/engine/backend.h"
#include "embed/model/config.h"
#include "embed/model/weights.h"
#include "quant_fp8.cuh"

namespace qsearch {

struct DeviceLayer {
  bf16* qkv = nullptr;  // bf16 matrices (null with kFP8)
  bf16* o = nullptr;
  bf16* gate_up = nullptr;
  bf16* down = nullptr;
  fp8e4* qkv_q = nullptr;  // kFP8: E4M3 matrices and their per-row scales (null with kBF16)
  fp8e4* o_q = nullptr;
  fp8e4* gate_up_q = nullptr;
  fp8e4* down_q = nullptr;
  float* qkv_s = nullptr;
  float* o_s = nullptr;
  float* gate_up_s = nullptr;
  float* down_s = nullptr;
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
  static int64_t bytes_needed(const ModelConfig& config, EngineDType dtype = EngineDType::kBF16);
  // Extra device memory upload()/randomize() hold while they run (the kFP8 staging buffer).
  static int64_t staging_bytes(const ModelConfig& config, EngineDType dtype);

  // Allocates on the current device (kResourceExhausted when it does not fit).
  Status allocate(const ModelConfig& config, EngineDType dtype = EngineDType::kBF16);
  // Copies a loaded checkpoint in (after allocate()).
  Status upload(const ModelWeights& weights, cudaStream_t stream);
  // Random weights for benchmarks: matrices ~ N(0, 0.02) drawn on the GPU, norms 1 (as
  // transformers initialises a fresh Qwen3Model).
  Status randomize(uint64_t seed, cudaStream_t stream);

  int64_t bytes() const { return bytes_; }
  EngineDType dtype() const { return dtype_; }
  const bf16* embed() const { return embed_; }
  const DeviceLayer& layer(int i) const { return layers_[i]; }
  const float* norm() const { return norm_; }
  const float* inv_freq() const { return inv_freq_; }

 private:
  ModelConfig config_;
  EngineDType dtype_ = EngineDType::kBF16;
  bf16* matrices_ = nullptr;
  fp8e4* quantized_ = nullptr;
  float* vectors_ = nullptr;
  int64_t matrix_elems_ = 0, quantized_elems_ = 0, vector_elems_ = 0, bytes_ = 0;
  bf16* embed_ = nullptr;
  std::vector<DeviceLayer> layers_;
  float* norm_ = nullptr;
  float* inv_freq_ = nullptr;
};

}  // namespace qsearch
