#include <cmath>

#include "qk_norm_rope.cuh"

namespace qsearch {

constexpr int kHeadDim = 128;
constexpr int kWarpsPerBlock = 4;

std::vector<float> rope_inv_freq(double theta, int head_dim) {
  std::vector<float> f(head_dim / 2);
  const float base = static_cast<float>(theta);
  for (int i = 0; i < head_dim / 2; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    f[i] = 1.0f / std::pow(base, e);
  }
  return f;
}

// One warp per (token, head). Lane l holds the pairs (2l, 2l+1) of the first half and
// (64+2l, 64+2l+1) of the second half: exactly the elements rotate-half mixes.
static __global__ void __launch_bounds__(kWarpsPerBlock * 32)
    qk_norm_rope_kernel(bf16* __restrict__ qkv, int num_tokens, int num_q_heads, int heads, int ld,
                        const int32_t* __restrict__ positions, const float* __restrict__ inv_freq,
                        const float* __restrict__ q_weight, const float* __restrict__ k_weight,
                        float eps) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  if (item >= static_cast<int64_t>(num_tokens) * heads) return;
  const int lane = threadIdx.x & 31;
  const int64_t token = item / heads;
  const int head = static_cast<int>(item % heads);  // q heads first, then k heads
  bf16* x = qkv + token * ld + head * kHeadDim;
  const float* w = head < num_q_heads ? q_weight : k_weight;

  __nv_bfloat162* x2 = reinterpret_cast<__nv_bfloat162*>(x);
  float2 a = __bfloat1622float2(x2[lane]);
  float2 b = __bfloat1622float2(x2[32 + lane]);
  float ss = a.x * a.x + a.y * a.y + b.x * b.x + b.y * b.y;
  ss = warp_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(kHeadDim) + eps);
  const float2 wa = reinterpret_cast<const float2*>(w)[lane];
  const float2 wb = reinterpret_cast<const float2*>(w)[32 + lane];
  a.x = a.x * inv * wa.x;
  a.y = a.y * inv * wa.y;
  b.x = b.x * inv * wb.x;
  b.y = b.y * inv * wb.y;

  const float pos = static_cast<float>(positions[token]);
  const float2 f = reinterpret_cast<const float2*>(inv_freq)[lane];
  float s0, c0, s1, c1;
  sincosf(__fmul_rn(pos, f.x), &s0, &c0);
  sincosf(__fmul_rn(pos, f.y), &s1, &c1);
  // out1 = x1 * cos - x2 * sin ; out2 = x2 * cos + x1 * sin
  const float o1x = a.x * c0 - b.x * s0, o2x = b.x * c0 + a.x * s0;
  const float o1y = a.y * c1 - b.y * s1, o2y = b.y * c1 + a.y * s1;
  x2[lane] = __floats2bfloat162_rn(o1x, o1y);
  x2[32 + lane] = __floats2bfloat162_rn(o2x, o2y);
}

Status launch_qk_norm_rope(bf16* qkv, int num_tokens, int num_q_heads, int num_kv_heads,
                           const int32_t* positions, const float* inv_freq, const float* q_weight,
                           const float* k_weight, float eps, cudaStream_t stream) {
  if (num_tokens == 0) return Status::ok();
  const int heads = num_q_heads + num_kv_heads;
  const int ld = (num_q_heads + 2 * num_kv_heads) * kHeadDim;
  const int64_t items = static_cast<int64_t>(num_tokens) * heads;
  const int64_t blocks = ceil_div(items, kWarpsPerBlock);
  qk_norm_rope_kernel<<<static_cast<unsigned>(blocks), kWarpsPerBlock * 32, 0, stream>>>(
      qkv, num_tokens, num_q_heads, heads, ld, positions, inv_freq, q_weight, k_weight, eps);
  QS_CHECK_LAUNCH();
  return Status::ok();
}

}  // namespace qsearch
