#include "embed/engine/cuda/device_weights.h"

#include <cstring>
#include <string>

#include "fill.cuh"
#include "qk_norm_rope.cuh"

namespace qsearch {
namespace {

struct Sizes {
  int64_t embed, qkv, o, gate_up, down;  // elements of each matrix
  int64_t matrices, vectors;             // totals
};

Sizes sizes_of(const ModelConfig& c) {
  Sizes s;
  const int64_t h = c.hidden_size;
  s.embed = c.vocab_size * h;
  s.qkv = static_cast<int64_t>(c.q_width() + 2 * c.kv_width()) * h;
  s.o = h * c.q_width();
  s.gate_up = 2 * static_cast<int64_t>(c.intermediate_size) * h;
  s.down = h * c.intermediate_size;
  s.matrices = s.embed + c.num_layers * (s.qkv + s.o + s.gate_up + s.down);
  // per layer: two hidden norms, q and k norms; final norm; inv_freq (each padded to 64 floats)
  auto pad = [](int64_t n) { return round_up(n, 64); };
  s.vectors = c.num_layers * (2 * pad(h) + 2 * pad(c.head_dim)) + pad(h) + pad(c.head_dim / 2);
  return s;
}

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
  if (vectors_) cudaFree(vectors_);
}

int64_t DeviceWeights::bytes_needed(const ModelConfig& config) {
  Sizes s = sizes_of(config);
  return s.matrices * 2 + s.vectors * 4;
}

Status DeviceWeights::allocate(const ModelConfig& config) {
  if (config.head_dim != 128)
    return invalid_argument("the CUDA engine supports head_dim 128 only (config has " +
                            std::to_string(config.head_dim) + ")");
  config_ = config;
  Sizes s = sizes_of(config);
  matrix_elems_ = s.matrices;
  vector_elems_ = s.vectors;
  bytes_ = s.matrices * 2 + s.vectors * 4;
  CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&matrices_), s.matrices * 2));
  CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&vectors_), s.vectors * 4));
  bf16* m = matrices_;
  float* v = vectors_;
  auto take_m = [&m](int64_t n) {
    bf16* p = m;
    m += n;
    return p;
  };
  auto take_v = [&v](int64_t n) {
    float* p = v;
    v += round_up(n, 64);
    return p;
  };
  embed_ = take_m(s.embed);
  layers_.resize(config.num_layers);
  for (auto& l : layers_) {
    l.qkv = take_m(s.qkv);
    l.o = take_m(s.o);
    l.gate_up = take_m(s.gate_up);
    l.down = take_m(s.down);
    l.input_norm = take_v(config.hidden_size);
    l.post_norm = take_v(config.hidden_size);
    l.q_norm = take_v(config.head_dim);
    l.k_norm = take_v(config.head_dim);
  }
  norm_ = take_v(config.hidden_size);
  inv_freq_ = take_v(config.head_dim / 2);
  return Status::ok();
}

Status DeviceWeights::upload(const ModelWeights& w, cudaStream_t stream) {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden_size;
  QS_RETURN_IF_ERROR(copy_bf16(w.embed_tokens(), embed_, stream));
  for (int i = 0; i < c.num_layers; ++i) {
    const LayerWeights& lw = w.layer(i);
    DeviceLayer& l = layers_[i];
    QS_RETURN_IF_ERROR(copy_bf16(lw.q_proj, l.qkv, stream));
    QS_RETURN_IF_ERROR(copy_bf16(lw.k_proj, l.qkv + c.q_width() * h, stream));
    QS_RETURN_IF_ERROR(copy_bf16(lw.v_proj, l.qkv + (c.q_width() + c.kv_width()) * h, stream));
    QS_RETURN_IF_ERROR(copy_bf16(lw.o_proj, l.o, stream));
    QS_RETURN_IF_ERROR(copy_bf16(lw.gate_proj, l.gate_up, stream));
    QS_RETURN_IF_ERROR(copy_bf16(lw.up_proj, l.gate_up + c.intermediate_size * h, stream));
    QS_RETURN_IF_ERROR(copy_bf16(lw.down_proj, l.down, stream));
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
  QS_RETURN_IF_ERROR(launch_fill_random_bf16(matrices_, matrix_elems_, 0.02f, seed, stream));
  QS_RETURN_IF_ERROR(launch_fill_f32(vectors_, vector_elems_, 1.0f, stream));
  std::vector<float> f = rope_inv_freq(config_.rope_theta, config_.head_dim);
  CUDA_CHECK(cudaMemcpyAsync(inv_freq_, f.data(), f.size() * 4, cudaMemcpyHostToDevice, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return Status::ok();
}

}  // namespace qsearch
