#include "rms_norm.cuh"

namespace qsearch {

constexpr int kRmsThreads = 128;

// One block per row; each thread keeps VPT vectors of 8 values in registers between the two
// passes (sum of squares, then scale), so the row is read from memory once.
template <int VPT>
static __global__ void __launch_bounds__(kRmsThreads)
    add_rms_norm_kernel(float* __restrict__ residual, const bf16* __restrict__ delta,
                        const float* __restrict__ weight, bf16* __restrict__ out, int hidden,
                        float eps) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  float4* r = reinterpret_cast<float4*>(residual + row * hidden);
  const Bf16x8* d = delta ? reinterpret_cast<const Bf16x8*>(delta + row * hidden) : nullptr;
  const int vecs = hidden / 8;
  float v[VPT][8];
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int idx = threadIdx.x + i * kRmsThreads;
    if (idx < vecs) {
      float4 a = r[2 * idx], b = r[2 * idx + 1];
      v[i][0] = a.x;
      v[i][1] = a.y;
      v[i][2] = a.z;
      v[i][3] = a.w;
      v[i][4] = b.x;
      v[i][5] = b.y;
      v[i][6] = b.z;
      v[i][7] = b.w;
      if (d) {
        float f[8];
        unpack8(d[idx], f);
#pragma unroll
        for (int k = 0; k < 8; ++k) v[i][k] += f[k];
        r[2 * idx] = make_float4(v[i][0], v[i][1], v[i][2], v[i][3]);
        r[2 * idx + 1] = make_float4(v[i][4], v[i][5], v[i][6], v[i][7]);
      }
#pragma unroll
      for (int k = 0; k < 8; ++k) ss += v[i][k] * v[i][k];
    }
  }
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(hidden) + eps);
  const float4* w = reinterpret_cast<const float4*>(weight);
  Bf16x8* o = reinterpret_cast<Bf16x8*>(out + row * hidden);
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int idx = threadIdx.x + i * kRmsThreads;
    if (idx < vecs) {
      float4 wa = w[2 * idx], wb = w[2 * idx + 1];
      float wf[8] = {wa.x, wa.y, wa.z, wa.w, wb.x, wb.y, wb.z, wb.w};
      float f[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) f[k] = (v[i][k] * inv) * wf[k];
      o[idx] = pack8(f);
    }
  }
}

Status launch_add_rms_norm(float* residual, const bf16* delta, const float* weight, bf16* out,
                           int num_tokens, int hidden, float eps, cudaStream_t stream) {
  if (hidden % 8 != 0 || hidden > 8192 || hidden <= 0)
    return invalid_argument("rms_norm: hidden must be a multiple of 8 in 8..8192");
  if (num_tokens == 0) return Status::ok();
  const int vpt = static_cast<int>(ceil_div(hidden / 8, kRmsThreads));
  switch (vpt) {
#define QS_RMS_CASE(N)                                                                       \
  case N:                                                                                    \
    add_rms_norm_kernel<N>                                                                   \
        <<<num_tokens, kRmsThreads, 0, stream>>>(residual, delta, weight, out, hidden, eps); \
    break;
    QS_RMS_CASE(1)
    QS_RMS_CASE(2)
    QS_RMS_CASE(3)
    QS_RMS_CASE(4)
    QS_RMS_CASE(5)
    QS_RMS_CASE(6)
    QS_RMS_CASE(7)
    QS_RMS_CASE(8)
#undef QS_RMS_CASE
    default:
      return invalid_argument("rms_norm: hidden too large");
  }
  QS_CHECK_LAUNCH();
  return Status::ok();
}

}  // namespace qsearch
