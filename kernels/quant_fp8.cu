#include "quant_fp8.cuh"

namespace qsearch {
namespace {

constexpr int kQuantThreads = 256;
constexpr int kNormThreads = 128;  // as rms_norm.cu

// Max over a whole block (blockDim.x a multiple of 32); every thread gets it. scratch: 32 floats.
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < warps ? scratch[lane] : 0.0f;
  return warp_max(t);
}

// The row's scale and its reciprocal (the multiplier into E4M3 range) from its absmax.
__device__ __forceinline__ float2 row_scale(float absmax) {
  if (!(absmax > 0.0f)) return make_float2(1.0f, 1.0f);  // all zeros: any scale works
  return make_float2(absmax / kFp8E4M3Max, kFp8E4M3Max / absmax);
}

// 8 values * inv -> 8 E4M3 bytes in one 8-byte store.
__device__ __forceinline__ uint2 quant8(const float* f, float inv) {
  uint32_t w[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const __nv_fp8x2_storage_t lo = __nv_cvt_float2_to_fp8x2(
        make_float2(f[4 * h] * inv, f[4 * h + 1] * inv), __NV_SATFINITE, __NV_E4M3);
    const __nv_fp8x2_storage_t hi = __nv_cvt_float2_to_fp8x2(
        make_float2(f[4 * h + 2] * inv, f[4 * h + 3] * inv), __NV_SATFINITE, __NV_E4M3);
    w[h] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
  }
  return make_uint2(w[0], w[1]);
}

// Two passes over the row (absmax, then quantize); the second read mostly hits L1/L2. Any width.
__global__ void __launch_bounds__(kQuantThreads)
    quantize_rows_kernel(const bf16* __restrict__ x, int cols, fp8e4* __restrict__ out,
                         float* __restrict__ scales) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const Bf16x8* in = reinterpret_cast<const Bf16x8*>(x + row * cols);
  uint2* o = reinterpret_cast<uint2*>(out + row * cols);
  const int vecs = cols / 8;
  float m = 0.0f;
  for (int i = threadIdx.x; i < vecs; i += kQuantThreads) {
    float f[8];
    unpack8(in[i], f);
#pragma unroll
    for (int k = 0; k < 8; ++k) m = fmaxf(m, fabsf(f[k]));
  }
  const float2 s = row_scale(block_max(m, scratch));
  for (int i = threadIdx.x; i < vecs; i += kQuantThreads) {
    float f[8];
    unpack8(in[i], f);
    o[i] = quant8(f, s.y);
  }
  if (threadIdx.x == 0) scales[row] = s.x;
}

// rms_norm.cu's kernel with an E4M3 output: the normed row stays in registers for the absmax.
template <int VPT>
__global__ void __launch_bounds__(kNormThreads)
    add_rms_norm_fp8_kernel(float* __restrict__ residual, const bf16* __restrict__ delta,
                            const float* __restrict__ weight, fp8e4* __restrict__ out,
                            float* __restrict__ scales, int hidden, float eps) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  float4* r = reinterpret_cast<float4*>(residual + row * hidden);
  const Bf16x8* d = delta ? reinterpret_cast<const Bf16x8*>(delta + row * hidden) : nullptr;
  const int vecs = hidden / 8;
  float v[VPT][8];
  float ss = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int idx = threadIdx.x + i * kNormThreads;
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
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int idx = threadIdx.x + i * kNormThreads;
    if (idx < vecs) {
      float4 wa = w[2 * idx], wb = w[2 * idx + 1];
      float wf[8] = {wa.x, wa.y, wa.z, wa.w, wb.x, wb.y, wb.z, wb.w};
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        v[i][k] = (v[i][k] * inv) * wf[k];
        m = fmaxf(m, fabsf(v[i][k]));
      }
    }
  }
  const float2 s = row_scale(block_max(m, scratch));
  uint2* o = reinterpret_cast<uint2*>(out + row * hidden);
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int idx = threadIdx.x + i * kNormThreads;
    if (idx < vecs) o[idx] = quant8(v[i], s.y);
  }
  if (threadIdx.x == 0) scales[row] = s.x;
}

// One block per token; silu(gate) * up in fp32 kept in registers for the absmax.
template <int VPT>
__global__ void __launch_bounds__(kQuantThreads)
    swiglu_fp8_kernel(const bf16* __restrict__ gate_up, int inter, fp8e4* __restrict__ out,
                      float* __restrict__ scales) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const int vecs = inter / 8;
  const Bf16x8* g = reinterpret_cast<const Bf16x8*>(gate_up + row * 2 * inter);
  const Bf16x8* u = g + vecs;
  float v[VPT][8];
  float m = 0.0f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int idx = threadIdx.x + i * kQuantThreads;
    if (idx < vecs) {
      float gf[8], uf[8];
      unpack8(g[idx], gf);
      unpack8(u[idx], uf);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        v[i][k] = gf[k] / (1.0f + expf(-gf[k])) * uf[k];
        m = fmaxf(m, fabsf(v[i][k]));
      }
    }
  }
  const float2 s = row_scale(block_max(m, scratch));
  uint2* o = reinterpret_cast<uint2*>(out + row * inter);
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int idx = threadIdx.x + i * kQuantThreads;
    if (idx < vecs) o[idx] = quant8(v[i], s.y);
  }
  if (threadIdx.x == 0) scales[row] = s.x;
}

__global__ void scale_outer_kernel(bf16* __restrict__ y, const float* __restrict__ row_scale,
                                   const float* __restrict__ col_scale, int64_t num_vecs,
                                   int n_vecs) {
  Bf16x8* yv = reinterpret_cast<Bf16x8*>(y);
  const float4* cs = reinterpret_cast<const float4*>(col_scale);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < num_vecs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / n_vecs;
    const int col = static_cast<int>(i % n_vecs);
    const float rs = row_scale[row];
    const float4 a = cs[2 * col], b = cs[2 * col + 1];
    const float c[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    float f[8];
    unpack8(yv[i], f);
#pragma unroll
    for (int k = 0; k < 8; ++k) f[k] *= rs * c[k];
    yv[i] = pack8(f);
  }
}

}  // namespace

Status launch_quantize_rows_fp8(const bf16* x, int64_t rows, int cols, fp8e4* out, float* scales,
                                cudaStream_t stream) {
  if (cols <= 0 || cols % 8 != 0)
    return invalid_argument("quantize_rows_fp8: cols must be a positive multiple of 8");
  if (rows == 0) return Status::ok();
  if (rows > 0x7fffffff) return invalid_argument("quantize_rows_fp8: too many rows");
  quantize_rows_kernel<<<static_cast<unsigned>(rows), kQuantThreads, 0, stream>>>(x, cols, out,
                                                                                  scales);
  QS_CHECK_LAUNCH();
  return Status::ok();
}

Status launch_add_rms_norm_fp8(float* residual, const bf16* delta, const float* weight, fp8e4* out,
                               float* scales, int num_tokens, int hidden, float eps,
                               cudaStream_t stream) {
  if (hidden % 8 != 0 || hidden > 8192 || hidden <= 0)
    return invalid_argument("rms_norm_fp8: hidden must be a multiple of 8 in 8..8192");
  if (num_tokens == 0) return Status::ok();
  const int vpt = static_cast<int>(ceil_div(hidden / 8, kNormThreads));
  switch (vpt) {
#define QS_RMS8_CASE(N)                                                                            \
  case N:                                                                                          \
    add_rms_norm_fp8_kernel<N><<<num_tokens, kNormThreads, 0, stream>>>(residual, delta, weight,   \
                                                                        out, scales, hidden, eps); \
    break;
    QS_RMS8_CASE(1)
    QS_RMS8_CASE(2)
    QS_RMS8_CASE(3)
    QS_RMS8_CASE(4)
    QS_RMS8_CASE(5)
    QS_RMS8_CASE(6)
    QS_RMS8_CASE(7)
    QS_RMS8_CASE(8)
#undef QS_RMS8_CASE
    default:
      return invalid_argument("rms_norm_fp8: hidden too large");
  }
  QS_CHECK_LAUNCH();
  return Status::ok();
}

Status launch_swiglu_fp8(const bf16* gate_up, int num_tokens, int inter, fp8e4* out, float* scales,
                         cudaStream_t stream) {
  if (inter % 8 != 0 || inter <= 0 || inter > 16384)
    return invalid_argument("swiglu_fp8: intermediate size must be a multiple of 8 in 8..16384");
  if (num_tokens == 0) return Status::ok();
  const int vpt = static_cast<int>(ceil_div(inter / 8, kQuantThreads));
  switch (vpt) {
#define QS_SWIGLU8_CASE(N)                                                                       \
  case N:                                                                                        \
    swiglu_fp8_kernel<N><<<num_tokens, kQuantThreads, 0, stream>>>(gate_up, inter, out, scales); \
    break;
    QS_SWIGLU8_CASE(1)
    QS_SWIGLU8_CASE(2)
    QS_SWIGLU8_CASE(3)
    QS_SWIGLU8_CASE(4)
    QS_SWIGLU8_CASE(5)
    QS_SWIGLU8_CASE(6)
    QS_SWIGLU8_CASE(7)
    QS_SWIGLU8_CASE(8)
#undef QS_SWIGLU8_CASE
    default:
      return invalid_argument("swiglu_fp8: intermediate size too large");
  }
  QS_CHECK_LAUNCH();
  return Status::ok();
}

Status launch_scale_outer(bf16* y, const float* row_scale, const float* col_scale, int m, int n,
                          cudaStream_t stream) {
  if (n % 8 != 0 || n <= 0) return invalid_argument("scale_outer: n must be a multiple of 8");
  if (m == 0) return Status::ok();
  const int64_t vecs = static_cast<int64_t>(m) * (n / 8);
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>(ceil_div(vecs, threads), 132 * 16);
  scale_outer_kernel<<<static_cast<unsigned>(blocks), threads, 0, stream>>>(y, row_scale, col_scale,
                                                                            vecs, n / 8);
  QS_CHECK_LAUNCH();
  return Status::ok();
}

}  // namespace qsearch
