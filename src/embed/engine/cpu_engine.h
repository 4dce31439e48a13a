// The CPU reference engine: an fp32 forward of Qwen3 written to match transformers'
// modeling_qwen3.py operation by operation (the oracle for the CUDA engine, and the engine CI
// runs). make_cpu_backend (embedder.h) creates one.
//
// Numerics: weights converted to fp32 once at load (the embedding table stays memory-mapped and
// rows are converted at gather); every activation fp32; RMSNorm with the mean of squares
// accumulated in double, then x * rsqrt(var + eps) * w in fp32; RoPE inv_freq, angles, cos and
// sin computed in fp32 as torch does; softmax in fp32.
//
// Layout: a batch is packed without padding (backend.h). All projections run as one OpenBLAS
// sgemm over all tokens of the batch ([T, in] x [out, in]^T); q/k/v are fused into one
// [q_width + 2 kv_width, hidden] matrix and gate/up into one [2 intermediate, hidden] matrix.
// Attention is causal per (sequence, head): short sequences row by row on the thread pool,
// long ones in query tiles of kTileRows rows (scores tile [rows, keys] by sgemm, softmax on the
// pool, then P.V by sgemm), so memory per head is O(tile * n), never O(n^2): a 32k-token
// sequence needs kTileRows * 32k floats of scores.
//
// Concurrency: one embed() at a time (Backend contract). BLAS is only called from the thread
// running embed(); OpenBLAS threads itself. The pool runs norms, RoPE, softmax and short
// attention.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/thread_pool.h"
#include "embed/engine/backend.h"
#include "embed/model/config.h"
#include "embed/model/weights.h"

namespace qsearch {

struct CpuEngineOptions {
  int64_t max_batch_tokens = 8192;  // token budget of one embed() call (0: 8192)
  int threads = 0;                  // pool and OpenBLAS threads (0: all cores)
};

class CpuEngine : public Backend {
 public:
  // Loads and converts the weights of model_dir (config must be its config.json).
  static StatusOr<std::unique_ptr<CpuEngine>> create(const std::string& model_dir,
                                                     const ModelConfig& config,
                                                     const CpuEngineOptions& options = {});
  ~CpuEngine() override;

  std::string name() const override { return "cpu"; }
  int hidden_size() const override { return config_.hidden_size; }
  int64_t max_batch_tokens() const override { return max_batch_tokens_; }
  // max_position_embeddings. A single sequence up to this length is accepted even where it
  // exceeds max_batch_tokens() (the Embedder sends an over-budget item alone).
  int64_t max_sequence_tokens() const override { return config_.max_position_embeddings; }
  EngineMemory memory() const override;
  Status embed(const EngineBatch& batch, float* out) override;

  // Rows of the attention query tile in the long-sequence path; sequences longer than
  // kShortSequence tokens take that path.
  static constexpr int kTileRows = 256;
  static constexpr int kShortSequence = 128;

 private:
  struct Layer {
    std::vector<float> input_norm, post_norm, q_norm, k_norm;
    std::vector<float> wqkv;      // [q_width + 2 * kv_width, hidden]
    std::vector<float> wo;        // [hidden, q_width]
    std::vector<float> wgate_up;  // [2 * intermediate, hidden]
    std::vector<float> wdown;     // [hidden, intermediate]
  };
  CpuEngine(const ModelConfig& config, const CpuEngineOptions& options);
  void gather_embeddings(const std::vector<int32_t>& tokens, float* x) const;
  void ensure_rope_table(int64_t positions);
  void attention(const EngineBatch& batch, const float* qkv, float* attn);
  void attention_short(const float* qkv, int64_t start, int64_t len, int head, float* attn,
                       float* scores) const;
  void attention_long(const float* qkv, int64_t start, int64_t len, int head, float* attn);
  // Runs fn(i) for i in [0, n) on the pool with dynamic scheduling (and on the caller).
  void parallel(size_t n, const std::function<void(size_t)>& fn);

  ModelConfig config_;
  int64_t max_batch_tokens_;
  std::unique_ptr<ModelWeights> weights_;  // keeps the embedding table mapped
  std::vector<Layer> layers_;
  std::vector<float> final_norm_;
  std::vector<float> inv_freq_;             // [head_dim / 2]
  std::vector<float> rope_cos_, rope_sin_;  // [positions, head_dim / 2]
  int64_t rope_positions_ = 0;
  std::unique_ptr<ThreadPool> pool_;  // nullptr with threads == 1
  size_t num_threads_ = 1;
  // Workspace, grown on demand and reused between calls.
  std::vector<float> x_, h_, qkv_, attn_, mlp_, act_, tile_;
  int64_t weights_bytes_ = 0;
};

}  // namespace qsearch
