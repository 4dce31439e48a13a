// RMSNorm fused with the residual add (one pass over the residual stream per sub-layer).
//
//   residual[t] += delta[t]              (skipped when delta == nullptr)
//   out[t]       = residual[t] * rsqrt(mean(residual[t]^2) + eps) * weight
//
// Layout: residual [num_tokens, hidden] fp32 row-major (updated in place); delta and out
// [num_tokens, hidden] bf16 row-major; weight [hidden] fp32.
// Limits: hidden a multiple of 8 and at most 8192.
// Numerics: all arithmetic in fp32 (the residual stream stays fp32, unlike HF's bf16 path, which
// helps parity with HF fp32); out is rounded to bf16 once. Matches transformers' Qwen3RMSNorm.
#pragma once

#include "common.cuh"

namespace qsearch {

Status launch_add_rms_norm(float* residual, const bf16* delta, const float* weight, bf16* out,
                           int num_tokens, int hidden, float eps, cudaStream_t stream);

}  // namespace qsearch
