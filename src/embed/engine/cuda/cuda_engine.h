// The CUDA engine: Qwen3 prefill on one GPU with qsearch's own kernels (kernels/) and cuBLASLt
// GEMMs, behind the Backend interface (backend.h, whose data contract it implements exactly).
//
// Forward pass of a batch of T tokens (n sequences packed without padding, T rounded up to a
// multiple of 64 with padding rows that no real row ever reads):
//   embedding gather -> fp32 residual stream
//   per layer: add+RMSNorm -> QKV GEMM -> q/k norm + RoPE -> causal varlen attention ->
//              o GEMM -> add+RMSNorm -> gate|up GEMM -> SwiGLU -> down GEMM
//   last-token pool: final add + RMSNorm + MRL truncation + L2 normalisation (fp32 out)
// Weights are bf16, activations bf16, the residual stream fp32 (closer to HF fp32 than HF's own
// bf16 path). With dtype kFP8 (--dtype fp8, sm_89+ only) the four GEMMs of each layer run on FP8
// tensor cores: weights E4M3 with one scale per output channel, quantized at load
// (device_weights.h); activations E4M3 with one scale per token, quantized by the kernel that
// produces them (the RMSNorms and SwiGLU write E4M3 directly; the attention output gets its own
// quantization pass), fp32 accumulation and bf16 GEMM outputs (gemm.h). Norms, RoPE, attention
// and the fp32 residual stream are the same as with bf16. Batches of up to graph_max_tokens tokens
// replay a CUDA graph captured per (padded tokens, attention tile bucket), so small requests are
// not launch-bound.
//
// Memory: weights + a workspace for max(max_batch_tokens, max_sequence_tokens) tokens, both
// allocated and logged at creation; if they do not fit, creation fails with kResourceExhausted.
// Concurrency: one embed() at a time (Backend contract); every call selects the engine's device,
// so any thread may drive it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "embed/engine/backend.h"
#include "embed/model/config.h"

namespace qsearch {

inline constexpr int64_t kDefaultCudaBatchTokens = 32768;

struct CudaEngineOptions {
  int device = 0;
  // Token budget of one embed() call (0: kDefaultCudaBatchTokens).
  int64_t max_batch_tokens = 0;
  // Longest single sequence (0: min(max_position_embeddings, max(32768, max_batch_tokens))).
  int64_t max_sequence_tokens = 0;
  // Batches up to this many (padded) tokens run as CUDA graph replays (0: never).
  int64_t graph_max_tokens = 2048;
  // GEMM numerics. kFP8 on a GPU below compute capability 8.9: creation fails (kUnavailable,
  // kFp8NeedsGpuMessage).
  EngineDType dtype = EngineDType::kBF16;
  // kFP8 only: cuBLASLt's fast (reduced-precision) FP8 accumulation (gemm.h).
  bool fp8_fast_accum = false;
};

// Loads model_dir (config must be its config.json) onto options.device.
StatusOr<std::unique_ptr<Backend>> make_cuda_engine(const std::string& model_dir,
                                                    const ModelConfig& config,
                                                    const CudaEngineOptions& options);

// For benchmarks: an engine with random bf16 weights of config's shapes drawn on the GPU (no
// files needed; an 8B checkpoint would be 16 GB).
StatusOr<std::unique_ptr<Backend>> make_random_cuda_engine(const ModelConfig& config,
                                                           const CudaEngineOptions& options,
                                                           uint64_t seed = 1);

}  // namespace qsearch
