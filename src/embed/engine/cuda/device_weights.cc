#include "embed/engine/cuda/device_weights.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "fill.cuh"
#include "qk_norm_rope.cuh"

namespace qsearch {
namespace {

struct Sizes {
  int64_t embed, qkv, o, gate_up, down;  // elements of each matrix
  int64_t layer;                         // qkv + o + gate_up + down
  int64_t matrices, vectors;             // totals (bf16 matrices, including embed; fp32 vectors)
  int64_t quantized;                     // kFP8: E4M3 elements (the layers' matrices)
};

int64_t pad64(int64_t n) { return round_up(n, 64); }

Sizes sizes_of(const ModelConfig& c, EngineDType dtype) {
  Sizes s;
  const int64_t h = c.hidden_size;
  s.embed = c.vocab_size * h;
  s.qkv = static_cast<int64_t>(c.q_width() + 2 * c.kv_width()) * h;
  s.o = h * c.q_width();
  s.gate_up = 2 * static_cast<int64_t>(c.intermediate_size) * h;
  s.down = h * c.intermediate_size;
  s.layer = s.qkv + s.o + s.gate_up + s.down;
  const bool fp8 = dtype == EngineDType::kFP8;
  s.matrices = s.embed + (fp8 ? 0 : c.num_layers * s.layer);
  s.quantized = fp8 ? c.num_layers * s.layer : 0;
  // per layer: two hidden norms, q and k norms; final norm; inv_freq (each padded to 64 floats);
  // kFP8 adds the per-row scales of the four matrices
  const int64_t scales = fp8 ? pad64(c.q_width() + 2 * c.kv_width()) + pad64(h) +
                                   pad64(2 * static_cast<int64_t>(c.intermediate_size)) + pad64(h)
                             : 0;
  s.vectors = c.num_layers * (2 * pad64(h) + 2 * pad64(c.head_dim) + scales) + pad64(h) +
              pad64(c.head_dim / 2);
  return s;
}

int64_t total_bytes(const Sizes& s) { return s.matrices * 2 + s.quantized + s.vectors * 4; }

// Host -> device copy of a tensor as bf16 (straight from the mapping when it already is bf16).
Status copy_bf16(const TensorView& t, bf16* dst, cudaStream_t stream) {
  if (t.dtype == DType::kBF16) {
    CUDA_CHECK(cudaMemcpyAsync(dst, t.data, t.nbytes(), cudaMemcpyHostToDevice, stream));
    return Status::ok();
  }
  std::vector<uint16_t> v = t.to_bf16();
  CUDA_CHECK(cudaMemcpyAsync(dst, v.data(), v.size() * 2, cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));  // v dies here
  return Status::ok();
}

Status copy_f32(const TensorView& t, float* dst, cudaStream_t stream) {
  std::vector<float> v = t.to_float();
  CUDA_CHECK(cudaMemcpyAsync(dst, v.data(), v.size() * 4, cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return Status::ok();
}

}  // namespace

DeviceWeights::~DeviceWeights() {
  if (matrices_) cudaFree(matrices_);
  if (quantized_) cudaFree(quantized_);
  if (vectors_) cudaFree(vectors_);
}

int64_t DeviceWeights::bytes_needed(const ModelConfig& config, EngineDType dtype) {
  return total_bytes(sizes_of(config, dtype));
}

int64_t DeviceWeights::staging_bytes(const ModelConfig& config, EngineDType dtype) {
  if (dtype != EngineDType::kFP8) return 0;
  const Sizes s = sizes_of(config, dtype);
  return std::max({s.qkv, s.o, s.gate_up, s.down}) * 2;
}

Status DeviceWeights::allocate(const ModelConfig& config, EngineDType dtype) {
  if (config.head_dim != 128)
    return invalid_argument("the CUDA engine supports head_dim 128 only (config has " +
                            std::to_string(config.head_dim) + ")");
  config_ = config;
  dtype_ = dtype;
  const bool fp8 = dtype == EngineDType::kFP8;
  Sizes s = sizes_of(config, dtype);
  matrix_elems_ = s.matrices;
  quantized_elems_ = s.quantized;
  vector_elems_ = s.vectors;
  bytes_ = total_bytes(s);
  CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&matrices_), s.matrices * 2));
  if (fp8) CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&quantized_), s.quantized));
  CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&vectors_), s.vectors * 4));
  bf16* m = matrices_;
  fp8e4* q = quantized_;
  float* v = vectors_;
  auto take_m = [&m](int64_t n) {
    bf16* p = m;
    m += n;
    return p;
  };
  // E4M3 matrices start 256-byte aligned (every size here is a multiple of 256 for Qwen3 shapes;
  // cuBLASLt wants 16)
  auto take_q = [&q](int64_t n) {
    fp8e4* p = q;
    q += n;
    return p;
  };
  auto take_v = [&v](int64_t n) {
    float* p = v;
    v += pad64(n);
    return p;
  };
  embed_ = take_m(s.embed);
  layers_.assign(config.num_layers, DeviceLayer{});
  const int64_t qkv_rows = config.q_width() + 2 * config.kv_width();
  for (auto& l : layers_) {
    if (fp8) {
      l.qkv_q = take_q(s.qkv);
      l.o_q = take_q(s.o);
      l.gate_up_q = take_q(s.gate_up);
      l.down_q = take_q(s.down);
    } else {
      l.qkv = take_m(s.qkv);
      l.o = take_m(s.o);
      l.gate_up = take_m(s.gate_up);
      l.down = take_m(s.down);
    }
    l.input_norm = take_v(config.hidden_size);
    l.post_norm = take_v(config.hidden_size);
    l.q_norm = take_v(config.head_dim);
    l.k_norm = take_v(config.head_dim);
    if (fp8) {
      l.qkv_s = take_v(qkv_rows);
      l.o_s = take_v(config.hidden_size);
      l.gate_up_s = take_v(2 * static_cast<int64_t>(config.intermediate_size));
      l.down_s = take_v(config.hidden_size);
    }
  }
  norm_ = take_v(config.hidden_size);
  inv_freq_ = take_v(config.head_dim / 2);
  return Status::ok();
}

namespace {

// A device bf16 buffer freed on scope exit (the kFP8 staging area).
struct Staging {
  bf16* p = nullptr;
  ~Staging() {
    if (p) cudaFree(p);
  }
};

}  // namespace

Status DeviceWeights::upload(const ModelWeights& w, cudaStream_t stream) {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size;
  const bool fp8 = dtype_ == EngineDType::kFP8;
  Staging staging;
  if (fp8) CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&staging.p), staging_bytes(c, dtype_)));
  // A Linear weight [rows, cols] into the bf16 matrix at row `row` of dst, or (kFP8) quantized
  // into the E4M3 matrix q and its scales s at that row. Stream order keeps the staging buffer's
  // reuse safe.
  auto put = [&](const TensorView& t, int64_t row, bf16* dst, fp8e4* q, float* s,
                 int64_t cols) -> Status {
    if (!fp8) return copy_bf16(t, dst + row * cols, stream);
    QS_RETURN_IF_ERROR(copy_bf16(t, staging.p, stream));
    const int64_t rows = static_cast<int64_t>(t.numel()) / cols;
    return launch_quantize_rows_fp8(staging.p, rows, static_cast<int>(cols), q + row * cols,
                                    s + row, stream);
  };
  QS_RETURN_IF_ERROR(copy_bf16(w.embed_tokens(), embed_, stream));
  const int64_t inter = c.intermediate_size;
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerWeights& lw = w.layer(i);
    DeviceLayer& l = layers_[i];
    QS_RETURN_IF_ERROR(put(lw.q_proj, 0, l.qkv, l.qkv_q, l.qkv_s, h));
    QS_RETURN_IF_ERROR(put(lw.k_proj, c.q_width(), l.qkv, l.qkv_q, l.qkv_s, h));
    QS_RETURN_IF_ERROR(put(lw.v_proj, c.q_width() + c.kv_width(), l.qkv, l.qkv_q, l.qkv_s, h));
    QS_RETURN_IF_ERROR(put(lw.o_proj, 0, l.o, l.o_q, l.o_s, c.q_width()));
    QS_RETURN_IF_ERROR(put(lw.gate_proj, 0, l.gate_up, l.gate_up_q, l.gate_up_s, h));
    QS_RETURN_IF_ERROR(put(lw.up_proj, inter, l.gate_up, l.gate_up_q, l.gate_up_s, h));
    QS_RETURN_IF_ERROR(put(lw.down_proj, 0, l.down, l.down_q, l.down_s, inter));
    QS_RETURN_IF_ERROR(copy_f32(lw.input_layernorm, l.input_norm, stream));
    QS_RETURN_IF_ERROR(copy_f32(lw.post_attention_layernorm, l.post_norm, stream));
    QS_RETURN_IF_ERROR(copy_f32(lw.q_norm, l.q_norm, stream));
    QS_RETURN_IF_ERROR(copy_f32(lw.k_norm, l.k_norm, stream));
  }
  QS_RETURN_IF_ERROR(copy_f32(w.norm(), norm_, stream));
  std::vector<float> f = rope_inv_freq(c.rope_theta, c.head_dim);
  CUDA_CHECK(cudaMemcpyAsync(inv_freq_, f.data(), f.size() * 4, cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return Status::ok();
}

Status DeviceWeights::randomize(uint64_t seed, cudaStream_t stream) {
  const ModelConfig& c = config_;
  QS_RETURN_IF_ERROR(launch_fill_f32(vectors_, vector_elems_, 1.0f, stream));
  if (dtype_ != EngineDType::kFP8) {
    QS_RETURN_IF_ERROR(launch_fill_random_bf16(matrices_, matrix_elems_, 0.02f, seed, stream));
  } else {
    // the bf16 engine's values for this seed (same index in its one matrices_ allocation), each
    // matrix drawn into the staging buffer and quantized (after the fill above: scales are
    // vectors)
    const Sizes s = sizes_of(c, EngineDType::kFP8);
    QS_RETURN_IF_ERROR(launch_fill_random_bf16(matrices_, s.embed, 0.02f, seed, stream));
    Staging staging;
    CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&staging.p), staging_bytes(c, dtype_)));
    const int64_t h = c.hidden_size;
    for (int i = 0; i < c.num_layers; ++i) {
      const DeviceLayer& l = layers_[i];
      int64_t first = s.embed + i * s.layer;
      auto draw = [&](int64_t rows, int64_t cols, fp8e4* q, float* sc) -> Status {
        QS_RETURN_IF_ERROR(
            launch_fill_random_bf16(staging.p, rows * cols, 0.02f, seed, stream, first));
        first += rows * cols;
        return launch_quantize_rows_fp8(staging.p, rows, static_cast<int>(cols), q, sc, stream);
      };
      QS_RETURN_IF_ERROR(draw(c.q_width() + 2 * c.kv_width(), h, l.qkv_q, l.qkv_s));
      QS_RETURN_IF_ERROR(draw(h, c.q_width(), l.o_q, l.o_s));
      QS_RETURN_IF_ERROR(
          draw(2 * static_cast<int64_t>(c.intermediate_size), h, l.gate_up_q, l.gate_up_s));
      QS_RETURN_IF_ERROR(draw(h, c.intermediate_size, l.down_q, l.down_s));
    }
    CUDA_CHECK(cudaStreamSynchronize(stream));  // staging dies here
  }
  std::vector<float> f = rope_inv_freq(c.rope_theta, c.head_dim);
  CUDA_CHECK(cudaMemcpyAsync(inv_freq_, f.data(), f.size() * 4, cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return Status::ok();
}

}  // namespace qsearch
