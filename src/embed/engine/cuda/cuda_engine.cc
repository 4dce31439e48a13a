#include "embed/engine/cuda/cuda_engine.h"

#include <cuda_runtime_api.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <tuple>
#include <utility>
#include <vector>

#include "attention.cuh"
#include "embed/embedder.h"
#include "embed/engine/cuda/device_weights.h"
#include "embed/engine/cuda/gemm.h"
#include "embedding.cuh"
#include "pool.cuh"
#include "qk_norm_rope.cuh"
#include "quant_fp8.cuh"
#include "rms_norm.cuh"
#include "swiglu.cuh"

namespace qsearch {
namespace {

constexpr int64_t kRowAlign = 64;              // batches are padded to a multiple of 64 rows
constexpr int64_t kMarginBytes = 256ll << 20;  // CUDA context growth, graphs, cuBLAS internals
constexpr size_t kGemmWorkspace = 32u << 20;
constexpr size_t kMaxGraphs = 256;

double gib(int64_t b) { return static_cast<double>(b) / (1ll << 30); }

// The engine's start-up report goes to stderr, never stdout: `qsearch embed` writes its vectors
// to stdout. Level and pattern follow the default logger's level.
std::shared_ptr<spdlog::logger> engine_log() {
  static std::shared_ptr<spdlog::logger> log = [] {
    auto l = spdlog::get("qsearch-cuda");
    if (!l) l = spdlog::stderr_color_mt("qsearch-cuda");
    return l;
  }();
  log->set_level(spdlog::get_level());
  return log;
}

int64_t next_pow2(int64_t x) {
  int64_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

// Per-batch metadata, in int32 units, in one buffer copied to the GPU with one memcpy. The part
// a captured graph reads (tokens, positions, tiles, num_tiles) depends only on the graph key.
struct BatchLayout {
  int64_t tokens = 0, positions = 0, tiles = 0, num_tiles = 0, last = 0, dims = 0, total = 0;
};

BatchLayout layout_for(int64_t t_run, int64_t tile_cap, int64_t n) {
  BatchLayout l;
  l.tokens = 0;
  l.positions = t_run;
  l.tiles = round_up(2 * t_run, 4);  // AttentionTile is 16 bytes
  l.num_tiles = l.tiles + 4 * tile_cap;
  l.last = l.num_tiles + 4;
  l.dims = l.last + n;
  l.total = l.dims + n;
  return l;
}

class CudaEngine final : public Backend {
 public:
  CudaEngine(const ModelConfig& config, const CudaEngineOptions& options)
      : c_(config), opt_(options) {}
  ~CudaEngine() override;

  // weights == nullptr: random weights from seed.
  Status init(const ModelWeights* weights, uint64_t seed);

  std::string name() const override { return "cuda:" + std::to_string(opt_.device); }
  int hidden_size() const override { return c_.hidden_size; }
  int64_t max_batch_tokens() const override { return budget_; }
  int64_t max_sequence_tokens() const override { return max_seq_; }
  EngineMemory memory() const override;
  Status embed(const EngineBatch& batch, float* out) override;

 private:
  Status allocate_workspace();
  Status enqueue_forward(int64_t t_run, int64_t grid_tiles, int block_m, const BatchLayout& lay);
  Status enqueue_forward_fp8(int64_t t_run, int64_t grid_tiles, int block_m,
                             const BatchLayout& lay);
  bool fp8() const { return opt_.dtype == EngineDType::kFP8; }
  // Bytes of the E4M3 activation buffer and its scales (0 with bf16).
  int64_t act_bytes() const;
  Status prepare_gemms(int64_t t_run);
  Status graph_for(int64_t t_run, int64_t tile_cap, int block_m, const BatchLayout& lay,
                   cudaGraphExec_t* out);
  Status run(const EngineBatch& batch, float* out, bool allow_graph);

  ModelConfig c_;
  CudaEngineOptions opt_;
  int64_t budget_ = 0, max_seq_ = 0, ws_tokens_ = 0;
  cudaStream_t stream_ = nullptr;
  DeviceWeights w_;
  GemmRunner gemm_;

  void* ws_ = nullptr;
  int64_t ws_bytes_ = 0;
  float* resid_ = nullptr;  // [ws_tokens, hidden] fp32 residual stream
  bf16* normed_ = nullptr;  // [ws_tokens, hidden] RMSNorm output (GEMM input)
  bf16* buf_a_ = nullptr;   // qkv, then o-proj delta; gate|up, then down delta
  bf16* buf_b_ = nullptr;   // attention output; SwiGLU output; pooled fp32 output
  fp8e4* act_q_ = nullptr;  // kFP8: the next GEMM's E4M3 input [ws_tokens, <= act_cols]
  float* act_s_ = nullptr;  // kFP8: its per-token scales [ws_tokens]
  int32_t* meta_dev_ = nullptr;
  int64_t meta_elems_ = 0;
  int32_t* meta_host_ = nullptr;  // pinned
  float* out_host_ = nullptr;     // pinned, grows
  int64_t out_host_elems_ = 0;
  std::vector<AttentionTile> tiles_;
  std::map<std::tuple<int64_t, int64_t, int>, cudaGraphExec_t> graphs_;
};

CudaEngine::~CudaEngine() {
  cudaSetDevice(opt_.device);
  if (stream_) cudaStreamSynchronize(stream_);
  for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g);
  if (ws_) cudaFree(ws_);
  if (meta_host_) cudaFreeHost(meta_host_);
  if (out_host_) cudaFreeHost(out_host_);
  if (stream_) cudaStreamDestroy(stream_);
}

Status CudaEngine::init(const ModelWeights* weights, uint64_t seed) {
  CUDA_CHECK(cudaSetDevice(opt_.device));
  if (c_.head_dim != 128)
    return invalid_argument("the CUDA engine supports head_dim 128 only (config has " +
                            std::to_string(c_.head_dim) + ")");
  if (c_.num_kv_heads <= 0 || c_.num_heads % c_.num_kv_heads != 0)
    return invalid_argument("num_attention_heads must be a multiple of num_key_value_heads");
  budget_ = opt_.max_batch_tokens > 0 ? opt_.max_batch_tokens : kDefaultCudaBatchTokens;
  max_seq_ = opt_.max_sequence_tokens > 0
                 ? opt_.max_sequence_tokens
                 : std::min<int64_t>(c_.max_position_embeddings, std::max<int64_t>(32768, budget_));
  if (c_.max_position_embeddings > 0) max_seq_ = std::min(max_seq_, c_.max_position_embeddings);
  ws_tokens_ = round_up(std::max(budget_, max_seq_), kRowAlign);

  if (fp8()) {
    int major = 0, minor = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, opt_.device));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, opt_.device));
    if (major * 10 + minor < 89)
      return unavailable(std::string(kFp8NeedsGpuMessage) +
                         "; cuda:" + std::to_string(opt_.device) + " is sm_" +
                         std::to_string(major) + std::to_string(minor));
    gemm_.set_fp8_fast_accum(opt_.fp8_fast_accum);
  }

  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));

  // Does it fit? Weights + workspace + margin against what is free now.
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  const int64_t h = c_.hidden_size;
  const int64_t a_cols =
      std::max<int64_t>({c_.q_width() + 2 * c_.kv_width(), 2 * c_.intermediate_size, 2 * h});
  const int64_t b_cols = std::max<int64_t>({c_.q_width(), c_.intermediate_size, 2 * h});
  meta_elems_ = 9 * ws_tokens_ + 256;
  const int64_t t = ws_tokens_;
  const int64_t normed_bytes = fp8() ? 0 : round_up(t * h * 2, 256);  // kFP8 writes act_q_
  ws_bytes_ = round_up(t * h * 4, 256) + normed_bytes + round_up(t * a_cols * 2, 256) +
              round_up(t * b_cols * 2, 256) + round_up(meta_elems_ * 4, 256) + act_bytes();
  const int64_t weight_bytes = DeviceWeights::bytes_needed(c_, opt_.dtype);
  // the kFP8 staging buffer is freed before the workspace is allocated: the larger of the two
  const int64_t need = weight_bytes +
                       std::max(ws_bytes_, DeviceWeights::staging_bytes(c_, opt_.dtype)) +
                       static_cast<int64_t>(kGemmWorkspace) + kMarginBytes;
  if (need > static_cast<int64_t>(free_b)) {
    char msg[512];
    std::snprintf(msg, sizeof msg,
                  "the model does not fit on cuda:%d: it needs %.2f GiB (weights %.2f GiB + "
                  "workspace %.2f GiB for %lld tokens + %.2f GiB reserve) but only %.2f of %.2f "
                  "GiB are free; use a GPU with more memory or lower max_batch_tokens",
                  opt_.device, gib(need), gib(weight_bytes), gib(ws_bytes_),
                  static_cast<long long>(ws_tokens_),
                  gib(static_cast<int64_t>(kGemmWorkspace) + kMarginBytes), gib(free_b),
                  gib(total_b));
    return resource_exhausted(msg);
  }

  QS_RETURN_IF_ERROR(w_.allocate(c_, opt_.dtype));
  if (weights) {
    QS_RETURN_IF_ERROR(w_.upload(*weights, stream_));
  } else {
    QS_RETURN_IF_ERROR(w_.randomize(seed, stream_));
  }
  QS_RETURN_IF_ERROR(gemm_.init(kGemmWorkspace));
  QS_RETURN_IF_ERROR(allocate_workspace());

  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  engine_log()->info(
      "{}: {} weights {:.2f} GiB, workspace {:.2f} GiB ({} tokens), {:.2f} of {:.2f} GiB free",
      name(), engine_dtype_name(opt_.dtype), gib(w_.bytes()),
      gib(ws_bytes_ + static_cast<int64_t>(kGemmWorkspace)), ws_tokens_, gib(free_b), gib(total_b));

  // Warm-up: loads the kernels, configures shared memory, plans the smallest GEMMs.
  EngineBatch warm;
  std::vector<int32_t> ids(16, 0);
  warm.add(ids, c_.hidden_size);
  std::vector<float> out(c_.hidden_size);
  return run(warm, out.data(), /*allow_graph=*/false).with_context("engine warm-up");
}

Status CudaEngine::allocate_workspace() {
  const int64_t h = c_.hidden_size, t = ws_tokens_;
  const int64_t a_cols =
      std::max<int64_t>({c_.q_width() + 2 * c_.kv_width(), 2 * c_.intermediate_size, 2 * h});
  const int64_t b_cols = std::max<int64_t>({c_.q_width(), c_.intermediate_size, 2 * h});
  CUDA_CHECK(cudaMalloc(&ws_, ws_bytes_));
  // zero once: padding rows are never NaN garbage
  CUDA_CHECK(cudaMemsetAsync(ws_, 0, ws_bytes_, stream_));
  char* p = static_cast<char*>(ws_);
  auto take = [&p](int64_t bytes) {
    char* r = p;
    p += round_up(bytes, 256);
    return r;
  };
  resid_ = reinterpret_cast<float*>(take(t * h * 4));
  if (!fp8()) normed_ = reinterpret_cast<bf16*>(take(t * h * 2));
  buf_a_ = reinterpret_cast<bf16*>(take(t * a_cols * 2));
  buf_b_ = reinterpret_cast<bf16*>(take(t * b_cols * 2));
  meta_dev_ = reinterpret_cast<int32_t*>(take(meta_elems_ * 4));
  if (fp8()) {
    act_s_ = reinterpret_cast<float*>(take(t * 4));
    act_q_ = reinterpret_cast<fp8e4*>(take(act_bytes() - round_up(t * 4, 256)));
  }
  CUDA_CHECK(
      cudaHostAlloc(reinterpret_cast<void**>(&meta_host_), meta_elems_ * 4, cudaHostAllocDefault));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  return Status::ok();
}

int64_t CudaEngine::act_bytes() const {
  if (!fp8()) return 0;
  const int64_t cols = std::max<int64_t>({c_.hidden_size, c_.q_width(), c_.intermediate_size});
  return round_up(ws_tokens_ * 4, 256) + round_up(ws_tokens_ * cols, 256);
}

EngineMemory CudaEngine::memory() const {
  EngineMemory m;
  m.weights_bytes = w_.bytes();
  m.workspace_bytes = ws_bytes_ + static_cast<int64_t>(gemm_.workspace_bytes());
  size_t free_b = 0, total_b = 0;
  if (cudaSetDevice(opt_.device) == cudaSuccess &&
      cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
    m.device_total_bytes = static_cast<int64_t>(total_b);
    m.device_free_bytes = static_cast<int64_t>(free_b);
  } else {
    cudaGetLastError();
  }
  return m;
}

Status CudaEngine::prepare_gemms(int64_t t_run) {
  const int m = static_cast<int>(t_run), h = c_.hidden_size, inter = c_.intermediate_size;
  if (fp8()) {
    QS_RETURN_IF_ERROR(gemm_.prepare_fp8(m, c_.q_width() + 2 * c_.kv_width(), h));
    QS_RETURN_IF_ERROR(gemm_.prepare_fp8(m, h, c_.q_width()));
    QS_RETURN_IF_ERROR(gemm_.prepare_fp8(m, 2 * inter, h));
    QS_RETURN_IF_ERROR(gemm_.prepare_fp8(m, h, inter));
    return Status::ok();
  }
  QS_RETURN_IF_ERROR(gemm_.prepare(m, c_.q_width() + 2 * c_.kv_width(), h));
  QS_RETURN_IF_ERROR(gemm_.prepare(m, h, c_.q_width()));
  QS_RETURN_IF_ERROR(gemm_.prepare(m, 2 * inter, h));
  QS_RETURN_IF_ERROR(gemm_.prepare(m, h, inter));
  return Status::ok();
}

// Everything from the token ids to the last layer's output; stream-ordered, capturable.
Status CudaEngine::enqueue_forward(int64_t t_run, int64_t grid_tiles, int block_m,
                                   const BatchLayout& lay) {
  if (fp8()) return enqueue_forward_fp8(t_run, grid_tiles, block_m, lay);
  const int t = static_cast<int>(t_run), h = c_.hidden_size, inter = c_.intermediate_size;
  const int qkv_w = c_.q_width() + 2 * c_.kv_width();
  const float eps = static_cast<float>(c_.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
  const int32_t* tokens = meta_dev_ + lay.tokens;
  const int32_t* positions = meta_dev_ + lay.positions;
  const auto* tiles = reinterpret_cast<const AttentionTile*>(meta_dev_ + lay.tiles);
  const int32_t* num_tiles = meta_dev_ + lay.num_tiles;

  QS_RETURN_IF_ERROR(launch_embedding_gather(w_.embed(), tokens, t, h, resid_, stream_));
  for (int i = 0; i < c_.num_layers; ++i) {
    const DeviceLayer& l = w_.layer(i);
    // residual += previous layer's MLP output (none before layer 0); normed = RMSNorm
    QS_RETURN_IF_ERROR(launch_add_rms_norm(resid_, i == 0 ? nullptr : buf_a_, l.input_norm, normed_,
                                           t, h, eps, stream_));
    QS_RETURN_IF_ERROR(gemm_.gemm(normed_, l.qkv, buf_a_, t, qkv_w, h, stream_));
    QS_RETURN_IF_ERROR(launch_qk_norm_rope(buf_a_, t, c_.num_heads, c_.num_kv_heads, positions,
                                           w_.inv_freq(), l.q_norm, l.k_norm, eps, stream_));
    QS_RETURN_IF_ERROR(launch_attention(buf_a_, c_.num_heads, c_.num_kv_heads, block_m, tiles,
                                        num_tiles, static_cast<int>(grid_tiles), scale, buf_b_,
                                        stream_));
    QS_RETURN_IF_ERROR(gemm_.gemm(buf_b_, l.o, buf_a_, t, h, c_.q_width(), stream_));
    QS_RETURN_IF_ERROR(
        launch_add_rms_norm(resid_, buf_a_, l.post_norm, normed_, t, h, eps, stream_));
    QS_RETURN_IF_ERROR(gemm_.gemm(normed_, l.gate_up, buf_a_, t, 2 * inter, h, stream_));
    QS_RETURN_IF_ERROR(launch_swiglu(buf_a_, t, inter, buf_b_, stream_));
    QS_RETURN_IF_ERROR(gemm_.gemm(buf_b_, l.down, buf_a_, t, h, inter, stream_));
  }
  return Status::ok();
}

// enqueue_forward with FP8 GEMMs: every GEMM input is written as E4M3 + per-token scales into
// act_q_/act_s_ by the kernel before it (each consumed by the next GEMM before it is rewritten).
Status CudaEngine::enqueue_forward_fp8(int64_t t_run, int64_t grid_tiles, int block_m,
                                       const BatchLayout& lay) {
  const int t = static_cast<int>(t_run), h = c_.hidden_size, inter = c_.intermediate_size;
  const int qkv_w = c_.q_width() + 2 * c_.kv_width();
  const float eps = static_cast<float>(c_.rms_norm_eps);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c_.head_dim));
  const int32_t* tokens = meta_dev_ + lay.tokens;
  const int32_t* positions = meta_dev_ + lay.positions;
  const auto* tiles = reinterpret_cast<const AttentionTile*>(meta_dev_ + lay.tiles);
  const int32_t* num_tiles = meta_dev_ + lay.num_tiles;

  QS_RETURN_IF_ERROR(launch_embedding_gather(w_.embed(), tokens, t, h, resid_, stream_));
  for (int i = 0; i < c_.num_layers; ++i) {
    const DeviceLayer& l = w_.layer(i);
    QS_RETURN_IF_ERROR(launch_add_rms_norm_fp8(resid_, i == 0 ? nullptr : buf_a_, l.input_norm,
                                               act_q_, act_s_, t, h, eps, stream_));
    QS_RETURN_IF_ERROR(
        gemm_.gemm_fp8(act_q_, act_s_, l.qkv_q, l.qkv_s, buf_a_, t, qkv_w, h, stream_));
    QS_RETURN_IF_ERROR(launch_qk_norm_rope(buf_a_, t, c_.num_heads, c_.num_kv_heads, positions,
                                           w_.inv_freq(), l.q_norm, l.k_norm, eps, stream_));
    QS_RETURN_IF_ERROR(launch_attention(buf_a_, c_.num_heads, c_.num_kv_heads, block_m, tiles,
                                        num_tiles, static_cast<int>(grid_tiles), scale, buf_b_,
                                        stream_));
    QS_RETURN_IF_ERROR(launch_quantize_rows_fp8(buf_b_, t, c_.q_width(), act_q_, act_s_, stream_));
    QS_RETURN_IF_ERROR(
        gemm_.gemm_fp8(act_q_, act_s_, l.o_q, l.o_s, buf_a_, t, h, c_.q_width(), stream_));
    QS_RETURN_IF_ERROR(
        launch_add_rms_norm_fp8(resid_, buf_a_, l.post_norm, act_q_, act_s_, t, h, eps, stream_));
    QS_RETURN_IF_ERROR(
        gemm_.gemm_fp8(act_q_, act_s_, l.gate_up_q, l.gate_up_s, buf_a_, t, 2 * inter, h, stream_));
    QS_RETURN_IF_ERROR(launch_swiglu_fp8(buf_a_, t, inter, act_q_, act_s_, stream_));
    QS_RETURN_IF_ERROR(
        gemm_.gemm_fp8(act_q_, act_s_, l.down_q, l.down_s, buf_a_, t, h, inter, stream_));
  }
  return Status::ok();
}

Status CudaEngine::graph_for(int64_t t_run, int64_t tile_cap, int block_m, const BatchLayout& lay,
                             cudaGraphExec_t* out) {
  auto key = std::make_tuple(t_run, tile_cap, block_m);
  auto it = graphs_.find(key);
  if (it != graphs_.end()) {
    *out = it->second;
    return Status::ok();
  }
  QS_RETURN_IF_ERROR(prepare_gemms(t_run));
  CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  Status st = enqueue_forward(t_run, tile_cap, block_m, lay);
  cudaGraph_t graph = nullptr;
  cudaError_t end = cudaStreamEndCapture(stream_, &graph);
  if (!st.is_ok()) {
    if (graph) cudaGraphDestroy(graph);
    return st.with_context("capturing a CUDA graph");
  }
  CUDA_CHECK(end);
  cudaGraphExec_t exec = nullptr;
  cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  CUDA_CHECK(inst);
  graphs_[key] = exec;
  *out = exec;
  return Status::ok();
}

Status CudaEngine::embed(const EngineBatch& batch, float* out) { return run(batch, out, true); }

Status CudaEngine::run(const EngineBatch& batch, float* out, bool allow_graph) {
  const int64_t n = static_cast<int64_t>(batch.num_sequences());
  if (n == 0) return Status::ok();
  // a single sequence may use the whole workspace (up to max_sequence_tokens)
  QS_RETURN_IF_ERROR(validate_batch(batch, c_.vocab_size, c_.hidden_size,
                                    n == 1 ? std::max(budget_, max_seq_) : budget_, max_seq_));
  CUDA_CHECK(cudaSetDevice(opt_.device));
  const int64_t t = static_cast<int64_t>(batch.num_tokens());
  const int64_t t_run = round_up(t, kRowAlign);
  const int64_t h = c_.hidden_size;

  tiles_.clear();
  const int block_m = attention_block_m(batch.cu_seqlens.data(), static_cast<int>(n));
  build_attention_tiles(batch.cu_seqlens.data(), static_cast<int>(n), block_m, &tiles_);
  const int64_t num_tiles = static_cast<int64_t>(tiles_.size());
  const bool use_graph = allow_graph && opt_.graph_max_tokens > 0 &&
                         t_run <= opt_.graph_max_tokens && (graphs_.size() < kMaxGraphs);
  const int64_t tile_cap =
      use_graph ? std::min(next_pow2(num_tiles), max_attention_tiles(t_run, t_run)) : num_tiles;
  const BatchLayout lay = layout_for(t_run, tile_cap, n);

  int32_t* m = meta_host_;
  std::memcpy(m + lay.tokens, batch.tokens.data(), t * 4);
  std::fill(m + lay.tokens + t, m + lay.tokens + t_run, 0);
  std::fill(m + lay.positions + t, m + lay.positions + t_run, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t s = batch.cu_seqlens[i], e = batch.cu_seqlens[i + 1];
    for (int32_t k = s; k < e; ++k) m[lay.positions + k] = k - s;
    m[lay.last + i] = e - 1;
    m[lay.dims + i] = batch.dims.empty() ? c_.hidden_size : batch.dims[i];
  }
  std::memcpy(m + lay.tiles, tiles_.data(), tiles_.size() * sizeof(AttentionTile));
  m[lay.num_tiles] = static_cast<int32_t>(num_tiles);
  CUDA_CHECK(cudaMemcpyAsync(meta_dev_, m, lay.total * 4, cudaMemcpyHostToDevice, stream_));

  if (use_graph) {
    cudaGraphExec_t exec = nullptr;
    QS_RETURN_IF_ERROR(graph_for(t_run, tile_cap, block_m, lay, &exec));
    CUDA_CHECK(cudaGraphLaunch(exec, stream_));
  } else {
    QS_RETURN_IF_ERROR(enqueue_forward(t_run, num_tiles, block_m, lay));
  }
  // final residual add + norm (+ MRL + L2 unless raw) of each last token, into buf_b (free again)
  float* pooled = reinterpret_cast<float*>(buf_b_);
  QS_RETURN_IF_ERROR(launch_last_token_pool(
      resid_, buf_a_, static_cast<int>(h), meta_dev_ + lay.last, meta_dev_ + lay.dims,
      static_cast<int>(n), w_.norm(), static_cast<float>(c_.rms_norm_eps), !batch.raw_hidden,
      pooled, stream_));
  if (out_host_elems_ < n * h) {
    if (out_host_) CUDA_CHECK(cudaFreeHost(out_host_));
    out_host_ = nullptr;
    out_host_elems_ = 0;
    CUDA_CHECK(
        cudaHostAlloc(reinterpret_cast<void**>(&out_host_), n * h * 4, cudaHostAllocDefault));
    out_host_elems_ = n * h;
  }
  CUDA_CHECK(cudaMemcpyAsync(out_host_, pooled, n * h * 4, cudaMemcpyDeviceToHost, stream_));
  CUDA_CHECK(cudaStreamSynchronize(stream_));
  std::memcpy(out, out_host_, n * h * 4);
  return Status::ok();
}

StatusOr<std::unique_ptr<Backend>> create(const ModelConfig& config,
                                          const CudaEngineOptions& options,
                                          const ModelWeights* weights, uint64_t seed) {
  const int count = cuda_device_count();
  if (count == 0) return unavailable("no CUDA device is visible");
  if (options.device < 0 || options.device >= count)
    return invalid_argument("CUDA device " + std::to_string(options.device) + " does not exist (" +
                            std::to_string(count) + " visible)");
  auto engine = std::make_unique<CudaEngine>(config, options);
  Status st = engine->init(weights, seed);
  if (!st.is_ok()) return st.with_context("cuda:" + std::to_string(options.device));
  return std::unique_ptr<Backend>(std::move(engine));
}

}  // namespace

StatusOr<std::unique_ptr<Backend>> make_cuda_engine(const std::string& model_dir,
                                                    const ModelConfig& config,
                                                    const CudaEngineOptions& options) {
  QS_ASSIGN_OR_RETURN(std::unique_ptr<ModelWeights> weights, ModelWeights::open(model_dir, config));
  return create(config, options, weights.get(), 0);
}

StatusOr<std::unique_ptr<Backend>> make_random_cuda_engine(const ModelConfig& config,
                                                           const CudaEngineOptions& options,
                                                           uint64_t seed) {
  return create(config, options, nullptr, seed);
}

StatusOr<std::unique_ptr<Backend>> make_cuda_backend(const std::string& model_dir,
                                                     const ModelConfig& config,
                                                     int64_t max_batch_tokens, int device,
                                                     EngineDType dtype) {
  CudaEngineOptions options;
  options.device = device;
  options.max_batch_tokens = max_batch_tokens;
  options.dtype = dtype;
  return make_cuda_engine(model_dir, config, options);
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error
    return 0;
  }
  return n;
}

}  // namespace qsearch
