// FP8 (E4M3) quantization for the FP8 engine (--dtype fp8): rows of a matrix become E4M3 values
// with one fp32 scale per row, so that row[j] ~= float(q[j]) * scale.
//
//   scale = absmax(row) / 448   (448: E4M3's largest finite value; an all-zero row gets scale 1)
//   q[j]  = e4m3_rn_satfinite(row[j] * (448 / absmax(row)))
//
// One scheme serves both GEMM operands: weights per output channel (a row of the HF [N, K]
// Linear weight, quantized once at load) and activations per token (a row of X [M, K], quantized
// dynamically by the kernel that produces X). The GEMM then needs sx[m] * sw[n] on its output
// (gemm.h). Numerics: the absmax and the products are fp32 from the fp32 values the producer
// computed (never from a bf16 rounding of them); E4M3 keeps 3 mantissa bits, so a normal value's
// relative error is at most 2^-4, and values below 2^-6 * scale (subnormals) are off by at most
// 2^-10 * scale.
//
// Launchers:
//   launch_quantize_rows_fp8   x [rows, cols] bf16 -> out [rows, cols] fp8, scales [rows]
//                              (weights at load; the attention output before o_proj)
//   launch_add_rms_norm_fp8    rms_norm.cuh's add + RMSNorm, the normed row quantized
//                              (the QKV and gate|up GEMM inputs)
//   launch_swiglu_fp8          swiglu.cuh's silu(gate) * up, the row quantized (down_proj input)
//   launch_scale_outer         y[m, n] *= row_scale[m] * col_scale[n] in place, bf16: the GEMM's
//                              scaling where cuBLASLt cannot apply per-row/per-column scales
// Layouts are row-major; cols, hidden and inter multiples of 8 (16-byte loads); the fused kernels
// keep a row in registers: hidden <= 8192, inter <= 16384.
#pragma once

#include <cuda_fp8.h>

#include "common.cuh"

namespace qsearch {

using fp8e4 = __nv_fp8_e4m3;
inline constexpr float kFp8E4M3Max = 448.0f;

Status launch_quantize_rows_fp8(const bf16* x, int64_t rows, int cols, fp8e4* out, float* scales,
                                cudaStream_t stream);

Status launch_add_rms_norm_fp8(float* residual, const bf16* delta, const float* weight, fp8e4* out,
                               float* scales, int num_tokens, int hidden, float eps,
                               cudaStream_t stream);

Status launch_swiglu_fp8(const bf16* gate_up, int num_tokens, int inter, fp8e4* out, float* scales,
                         cudaStream_t stream);

Status launch_scale_outer(bf16* y, const float* row_scale, const float* col_scale, int m, int n,
                          cudaStream_t stream);

}  // namespace qsearch
