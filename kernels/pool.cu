#include "pool.cuh"

namespace qsearch {

constexpr int kPoolThreads = 256;
constexpr int kPoolMaxPerThread = 32;  // hidden <= 8192

// One block per sequence; the normalised row stays in registers between the passes.
static __global__ void __launch_bounds__(kPoolThreads)
    last_token_pool_kernel(const float* __restrict__ residual, const bf16* __restrict__ delta,
                           int hidden, const int32_t* __restrict__ last_index,
                           const int32_t* __restrict__ dims, const float* __restrict__ norm_weight,
                           float eps, bool l2_normalize, float* __restrict__ out) {
  __shared__ float scratch[32];
  const int seq = blockIdx.x;
  const int64_t row = last_index[seq];
  const float* x = residual + row * hidden;
  const bf16* d = delta ? delta + row * hidden : nullptr;
  const int dim = dims[seq];
  float y[kPoolMaxPerThread];
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < kPoolMaxPerThread; ++i) {
    const int j = threadIdx.x + i * kPoolThreads;
    y[i] = j < hidden ? x[j] + (d ? __bfloat162float(d[j]) : 0.0f) : 0.0f;
    ss += y[i] * y[i];
  }
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(hidden) + eps);
  float* o = out + static_cast<int64_t>(seq) * hidden;
  if (!l2_normalize) {  // raw hidden state (block-uniform branch)
#pragma unroll
    for (int i = 0; i < kPoolMaxPerThread; ++i) {
      const int j = threadIdx.x + i * kPoolThreads;
      if (j < hidden) o[j] = y[i] * inv * norm_weight[j];
    }
    return;
  }
  float ss2 = 0.0f;
#pragma unroll
  for (int i = 0; i < kPoolMaxPerThread; ++i) {
    const int j = threadIdx.x + i * kPoolThreads;
    y[i] = j < dim ? y[i] * inv * norm_weight[j] : 0.0f;
    ss2 += y[i] * y[i];
  }
  ss2 = block_sum(ss2, scratch);
  const float norm = fmaxf(sqrtf(ss2), 1e-12f);
#pragma unroll
  for (int i = 0; i < kPoolMaxPerThread; ++i) {
    const int j = threadIdx.x + i * kPoolThreads;
    if (j < hidden) o[j] = y[i] / norm;
  }
}

Status launch_last_token_pool(const float* residual, const bf16* delta, int hidden,
                              const int32_t* last_index, const int32_t* dims, int n,
                              const float* norm_weight, float eps, bool l2_normalize, float* out,
                              cudaStream_t stream) {
  if (hidden > kPoolThreads * kPoolMaxPerThread)
    return invalid_argument("last_token_pool: hidden larger than 8192");
  if (n == 0) return Status::ok();
  last_token_pool_kernel<<<n, kPoolThreads, 0, stream>>>(residual, delta, hidden, last_index, dims,
                                                         norm_weight, eps, l2_normalize, out);
  QS_CHECK_LAUNCH();
  return Status::ok();
}

}  // namespace qsearch
