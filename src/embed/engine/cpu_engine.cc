// CPU reference engine: fp32 Qwen3 forward as in transformers' modeling_qwen3.py (see
// cpu_engine.h for numerics, layout and threading).
#include "embed/engine/cpu_engine.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "embed/embedder.h"

namespace qsearch {
namespace {

// Tokens per chunk of the MLP, bounding the [chunk, 2 * intermediate] buffer.
constexpr int64_t kMlpChunk = 2048;

// y = w * (x * rsqrt(mean(x^2) + eps)), as Qwen3RMSNorm in fp32 (mean accumulated in double).
inline void rms_norm(const float* x, const float* w, float eps, int n, float* y) {
  double ss = 0;
  for (int j = 0; j < n; ++j) ss += static_cast<double>(x[j]) * x[j];
  float var = static_cast<float>(ss / n);
  float r = 1.0f / std::sqrt(var + eps);
  for (int j = 0; j < n; ++j) y[j] = w[j] * (x[j] * r);
}

// NeoX rotate-half RoPE on one head: x' = x * cos + rotate_half(x) * sin, where
// rotate_half(x) = cat(-x[half:], x[:half]) and cos/sin repeat over both halves.
inline void rope(float* x, const float* cos, const float* sin, int half) {
  for (int i = 0; i < half; ++i) {
    float a = x[i], b = x[i + half];
    x[i] = a * cos[i] - b * sin[i];
    x[i + half] = b * cos[i] + a * sin[i];
  }
}

inline float dot(const float* a, const float* b, int n) {
  // Four partial sums: lets the compiler vectorise without -ffast-math.
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    s0 += a[j] * b[j];
    s1 += a[j + 1] * b[j + 1];
    s2 += a[j + 2] * b[j + 2];
    s3 += a[j + 3] * b[j + 3];
  }
  for (; j < n; ++j) s0 += a[j] * b[j];
  return (s0 + s1) + (s2 + s3);
}

// In-place softmax of s[0..n) (fp32, max-subtracted, like torch.softmax).
inline void softmax(float* s, int64_t n) {
  // Four partial maxima (vectorisable without -ffast-math; max is exact in any order).
  const float lowest = -std::numeric_limits<float>::infinity();
  float m0 = lowest, m1 = lowest, m2 = lowest, m3 = lowest;
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    m0 = s[j] > m0 ? s[j] : m0;
    m1 = s[j + 1] > m1 ? s[j + 1] : m1;
    m2 = s[j + 2] > m2 ? s[j + 2] : m2;
    m3 = s[j + 3] > m3 ? s[j + 3] : m3;
  }
  for (; j < n; ++j) m0 = s[j] > m0 ? s[j] : m0;
  const float m = std::max(std::max(m0, m1), std::max(m2, m3));
  float sum = 0;
  for (j = 0; j < n; ++j) {
    float e = std::exp(s[j] - m);
    s[j] = e;
    sum += e;
  }
  const float inv = 1.0f / sum;
  for (j = 0; j < n; ++j) s[j] *= inv;
}

// C[m, n] = beta * C + A[m, k] * B[n, k]^T, all row-major (B holds Linear weights [out, in]).
inline void matmul_nt(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                      int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a, static_cast<blasint>(lda),
              b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

template <typename V>
void grow(V& v, size_t n) {
  if (v.size() < n) v.resize(n);
}

}  // namespace

CpuEngine::CpuEngine(const ModelConfig& config, const CpuEngineOptions& options)
    : config_(config),
      max_batch_tokens_(options.max_batch_tokens > 0 ? options.max_batch_tokens : 8192) {
  num_threads_ = options.threads > 0 ? static_cast<size_t>(options.threads)
                                     : std::max(1u, std::thread::hardware_concurrency());
  if (num_threads_ > 1) pool_ = std::make_unique<ThreadPool>(num_threads_ - 1);
  if (options.threads > 0) openblas_set_num_threads(options.threads);
  // inv_freq = 1 / theta^(arange(0, d, 2).float() / d), all in fp32 as torch computes it.
  const int d = config_.head_dim;
  for (int i = 0; i < d; i += 2) {
    float e = static_cast<float>(i) / static_cast<float>(d);
    inv_freq_.push_back(1.0f / std::pow(static_cast<float>(config_.rope_theta), e));
  }
}

CpuEngine::~CpuEngine() = default;

StatusOr<std::unique_ptr<CpuEngine>> CpuEngine::create(const std::string& model_dir,
                                                       const ModelConfig& config,
                                                       const CpuEngineOptions& options) {
  QS_ASSIGN_OR_RETURN(auto weights, ModelWeights::open(model_dir, config));
  std::unique_ptr<CpuEngine> e(new CpuEngine(config, options));
  auto concat = [](std::vector<float> a, const std::vector<float>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  e->layers_.resize(config.num_layers);
  int64_t bytes = 0;
  for (int i = 0; i < config.num_layers; ++i) {
    const LayerWeights& w = weights->layer(i);
    Layer& l = e->layers_[i];
    l.input_norm = w.input_layernorm.to_float();
    l.post_norm = w.post_attention_layernorm.to_float();
    l.q_norm = w.q_norm.to_float();
    l.k_norm = w.k_norm.to_float();
    l.wqkv = concat(concat(w.q_proj.to_float(), w.k_proj.to_float()), w.v_proj.to_float());
    l.wo = w.o_proj.to_float();
    l.wgate_up = concat(w.gate_proj.to_float(), w.up_proj.to_float());
    l.wdown = w.down_proj.to_float();
    for (const auto* v :
         {&l.input_norm, &l.post_norm, &l.q_norm, &l.k_norm, &l.wqkv, &l.wo, &l.wgate_up, &l.wdown})
      bytes += static_cast<int64_t>(v->size() * sizeof(float));
  }
  e->final_norm_ = weights->norm().to_float();
  bytes += static_cast<int64_t>(e->final_norm_.size() * sizeof(float)) +
           static_cast<int64_t>(weights->embed_tokens().nbytes());
  e->weights_bytes_ = bytes;
  e->weights_ = std::move(weights);
  return e;
}

StatusOr<std::unique_ptr<Backend>> make_cpu_backend(const std::string& model_dir,
                                                    const ModelConfig& config,
                                                    int64_t max_batch_tokens, int threads) {
  CpuEngineOptions options;
  options.max_batch_tokens = max_batch_tokens;
  options.threads = threads;
  QS_ASSIGN_OR_RETURN(auto engine, CpuEngine::create(model_dir, config, options));
  return std::unique_ptr<Backend>(std::move(engine));
}

EngineMemory CpuEngine::memory() const {
  EngineMemory m;
  m.weights_bytes = weights_bytes_;
  size_t ws = x_.size() + h_.size() + qkv_.size() + attn_.size() + mlp_.size() + act_.size() +
              tile_.size() + rope_cos_.size() + rope_sin_.size();
  m.workspace_bytes = static_cast<int64_t>(ws * sizeof(float));
  return m;
}

void CpuEngine::parallel(size_t n, const std::function<void(size_t)>& fn) {
  if (!pool_ || n <= 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::atomic<size_t> next{0};
  pool_->parallel_for(std::min(n, num_threads_), [&](size_t, size_t) {
    for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
  });
}

void CpuEngine::gather_embeddings(const std::vector<int32_t>& tokens, float* x) const {
  const TensorView& table = weights_->embed_tokens();
  const int h = config_.hidden_size;
  const size_t row_bytes = static_cast<size_t>(h) * dtype_size(table.dtype);
  const uint8_t* base = static_cast<const uint8_t*>(table.data);
  for (size_t t = 0; t < tokens.size(); ++t) {
    const uint8_t* row = base + static_cast<size_t>(tokens[t]) * row_bytes;
    float* dst = x + t * h;
    if (table.dtype == DType::kF32) {
      std::memcpy(dst, row, row_bytes);
    } else {
      for (int j = 0; j < h; ++j) {
        uint16_t v;
        std::memcpy(&v, row + 2 * j, 2);
        dst[j] = table.dtype == DType::kBF16 ? bf16_to_float(v) : f16_to_float(v);
      }
    }
  }
}

void CpuEngine::ensure_rope_table(int64_t positions) {
  if (positions <= rope_positions_) return;
  const int half = config_.head_dim / 2;
  rope_cos_.resize(static_cast<size_t>(positions) * half);
  rope_sin_.resize(static_cast<size_t>(positions) * half);
  for (int64_t p = rope_positions_; p < positions; ++p) {
    for (int i = 0; i < half; ++i) {
      float angle = static_cast<float>(p) * inv_freq_[i];  // fp32 as in torch
      rope_cos_[p * half + i] = std::cos(angle);
      rope_sin_[p * half + i] = std::sin(angle);
    }
  }
  rope_positions_ = positions;
}

// Causal attention of one short sequence and one query head, row by row.
void CpuEngine::attention_short(const float* qkv, int64_t start, int64_t len, int head, float* attn,
                                float* scores) const {
  const int d = config_.head_dim, q_width = config_.q_width(), kv_width = config_.kv_width();
  const int64_t ld = q_width + 2 * kv_width;
  const int kv_head = head / (config_.num_heads / config_.num_kv_heads);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const float* k0 = qkv + start * ld + q_width + kv_head * d;
  const float* v0 = qkv + start * ld + q_width + kv_width + kv_head * d;
  for (int64_t i = 0; i < len; ++i) {
    const float* q = qkv + (start + i) * ld + head * d;
    for (int64_t j = 0; j <= i; ++j) scores[j] = dot(q, k0 + j * ld, d) * scale;
    softmax(scores, i + 1);
    float* o = attn + (start + i) * q_width + head * d;
    std::fill(o, o + d, 0.0f);
    for (int64_t j = 0; j <= i; ++j) {
      const float p = scores[j];
      const float* v = v0 + j * ld;
      for (int c = 0; c < d; ++c) o[c] += p * v[c];
    }
  }
}

// Causal attention of one long sequence and one query head, in query tiles: the scores of a
// tile ([rows, keys up to the tile's last row]) by sgemm, softmax per row on the pool, then
// P.V by sgemm. Memory: kTileRows * len floats.
void CpuEngine::attention_long(const float* qkv, int64_t start, int64_t len, int head,
                               float* attn) {
  const int d = config_.head_dim, q_width = config_.q_width(), kv_width = config_.kv_width();
  const int64_t ld = q_width + 2 * kv_width;
  const int kv_head = head / (config_.num_heads / config_.num_kv_heads);
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const float* k0 = qkv + start * ld + q_width + kv_head * d;
  const float* v0 = qkv + start * ld + q_width + kv_width + kv_head * d;
  grow(tile_, static_cast<size_t>(kTileRows) * len);
  for (int64_t r0 = 0; r0 < len; r0 += kTileRows) {
    const int64_t rows = std::min<int64_t>(kTileRows, len - r0);
    const int64_t keys = r0 + rows;  // causal: the tile's last row sees keys [0, keys)
    float* s = tile_.data();
    // scores = scale * Q K^T (alpha = scale: one rounding of the sum, then of the product, as
    // torch's matmul(q, k^T) * scaling).
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(rows),
                static_cast<blasint>(keys), d, scale, qkv + (start + r0) * ld + head * d,
                static_cast<blasint>(ld), k0, static_cast<blasint>(ld), 0.0f, s,
                static_cast<blasint>(keys));
    parallel(static_cast<size_t>(rows), [&](size_t r) {
      float* row = s + r * keys;
      const int64_t visible = r0 + static_cast<int64_t>(r) + 1;
      softmax(row, visible);
      std::fill(row + visible, row + keys, 0.0f);
    });
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(rows), d,
                static_cast<blasint>(keys), 1.0f, s, static_cast<blasint>(keys), v0,
                static_cast<blasint>(ld), 0.0f, attn + (start + r0) * q_width + head * d, q_width);
  }
}

void CpuEngine::attention(const EngineBatch& batch, const float* qkv, float* attn) {
  const size_t n = batch.num_sequences();
  const int heads = config_.num_heads;
  std::vector<std::pair<size_t, int>> short_tasks;  // (sequence, head)
  for (size_t i = 0; i < n; ++i) {
    int64_t len = batch.cu_seqlens[i + 1] - batch.cu_seqlens[i];
    if (len <= kShortSequence)
      for (int h = 0; h < heads; ++h) short_tasks.emplace_back(i, h);
  }
  parallel(short_tasks.size(), [&](size_t t) {
    float scores[kShortSequence];
    auto [i, h] = short_tasks[t];
    int64_t start = batch.cu_seqlens[i], len = batch.cu_seqlens[i + 1] - start;
    attention_short(qkv, start, len, h, attn, scores);
  });
  for (size_t i = 0; i < n; ++i) {
    int64_t start = batch.cu_seqlens[i], len = batch.cu_seqlens[i + 1] - start;
    if (len <= kShortSequence) continue;
    for (int h = 0; h < heads; ++h) attention_long(qkv, start, len, h, attn);
  }
}

Status CpuEngine::embed(const EngineBatch& batch, float* out) {
  const size_t n = batch.num_sequences();
  // A single sequence may exceed the batch budget up to the longest sequence accepted.
  int64_t budget = n == 1 ? std::max(max_batch_tokens_, max_sequence_tokens()) : max_batch_tokens_;
  QS_RETURN_IF_ERROR(validate_batch(batch, config_.vocab_size, config_.hidden_size, budget,
                                    max_sequence_tokens()));
  if (n == 0) return Status::ok();

  const int64_t T = static_cast<int64_t>(batch.num_tokens());
  const int H = config_.hidden_size, Q = config_.q_width(), KV = config_.kv_width();
  const int D = config_.head_dim, half = D / 2, I = config_.intermediate_size;
  const int64_t QKV = Q + 2 * KV;
  const float eps = static_cast<float>(config_.rms_norm_eps);

  std::vector<int32_t> positions(T);
  int64_t longest = 0;
  for (size_t i = 0; i < n; ++i) {
    int32_t b = batch.cu_seqlens[i], e = batch.cu_seqlens[i + 1];
    for (int32_t t = b; t < e; ++t) positions[t] = t - b;
    longest = std::max<int64_t>(longest, e - b);
  }
  ensure_rope_table(longest);

  grow(x_, T * H);
  grow(h_, T * H);
  grow(qkv_, T * QKV);
  grow(attn_, T * Q);
  const int64_t chunk = std::min(T, kMlpChunk);
  grow(mlp_, chunk * 2 * I);
  grow(act_, chunk * I);
  float* x = x_.data();
  float* h = h_.data();
  float* qkv = qkv_.data();
  float* attn = attn_.data();
  gather_embeddings(batch.tokens, x);

  // Token-parallel work in blocks of 16 tokens (keeps scheduling overhead small).
  const size_t token_blocks = static_cast<size_t>((T + 15) / 16);
  auto for_tokens = [&](const std::function<void(int64_t)>& fn) {
    parallel(token_blocks, [&](size_t blk) {
      int64_t e = std::min<int64_t>(T, static_cast<int64_t>(blk + 1) * 16);
      for (int64_t t = static_cast<int64_t>(blk) * 16; t < e; ++t) fn(t);
    });
  };

  for (const Layer& l : layers_) {
    // Self-attention block: h = input_layernorm(x); x += o_proj(attn(q, k, v)).
    for_tokens([&](int64_t t) { rms_norm(x + t * H, l.input_norm.data(), eps, H, h + t * H); });
    matmul_nt(T, QKV, H, h, H, l.wqkv.data(), H, 0.0f, qkv, QKV);
    // Per-head q_norm / k_norm (over head_dim), then RoPE at the token's own position.
    for_tokens([&](int64_t t) {
      float* row = qkv + t * QKV;
      const float* cos = rope_cos_.data() + static_cast<size_t>(positions[t]) * half;
      const float* sin = rope_sin_.data() + static_cast<size_t>(positions[t]) * half;
      for (int hd = 0; hd < config_.num_heads; ++hd) {
        float* q = row + hd * D;
        rms_norm(q, l.q_norm.data(), eps, D, q);
        rope(q, cos, sin, half);
      }
      for (int hd = 0; hd < config_.num_kv_heads; ++hd) {
        float* k = row + Q + hd * D;
        rms_norm(k, l.k_norm.data(), eps, D, k);
        rope(k, cos, sin, half);
      }
    });
    attention(batch, qkv, attn);
    matmul_nt(T, H, Q, attn, Q, l.wo.data(), Q, 1.0f, x, H);  // x += attn . Wo^T

    // MLP block: h = post_attention_layernorm(x); x += down(silu(gate(h)) * up(h)).
    for_tokens([&](int64_t t) { rms_norm(x + t * H, l.post_norm.data(), eps, H, h + t * H); });
    for (int64_t c0 = 0; c0 < T; c0 += chunk) {
      const int64_t rows = std::min(chunk, T - c0);
      float* gu = mlp_.data();
      float* act = act_.data();
      matmul_nt(rows, 2 * I, H, h + c0 * H, H, l.wgate_up.data(), H, 0.0f, gu, 2 * I);
      parallel(static_cast<size_t>(rows), [&](size_t r) {
        const float* g = gu + r * 2 * I;
        const float* u = g + I;
        float* a = act + r * I;
        for (int j = 0; j < I; ++j) a[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
      });
      matmul_nt(rows, H, I, act, I, l.wdown.data(), I, 1.0f, x + c0 * H, H);
    }
  }

  // Last-token pooling: final norm of the last token of each sequence, then MRL + L2 (not for
  // a raw hidden-state batch).
  for (size_t i = 0; i < n; ++i) {
    const float* last = x + static_cast<int64_t>(batch.cu_seqlens[i + 1] - 1) * H;
    float* row = out + i * H;
    rms_norm(last, final_norm_.data(), eps, H, row);
    if (!batch.raw_hidden) mrl_normalize(row, H, batch.dims.empty() ? H : batch.dims[i]);
  }
  return Status::ok();
}

}  // namespace qsearch
