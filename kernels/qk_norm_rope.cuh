// Per-head q/k RMSNorm fused with NeoX (rotate-half) RoPE, in place on the fused QKV activations.
//
// Layout: qkv [num_tokens, ld] bf16 row-major, ld = (num_q_heads + 2 * num_kv_heads) * 128; row t
// holds q heads, then k heads, then v heads (v is untouched). positions [num_tokens] int32, the
// position of each token inside its own sequence (restarts at 0 for every packed sequence).
// inv_freq [64] fp32: inv_freq[i] = 1 / theta^(float(2i)/128) computed in fp32 as transformers
// does (rope_inv_freq() below). q_weight / k_weight [128] fp32 (q_norm / k_norm weights).
// Limits: head_dim 128 only.
// Numerics: RMSNorm and the rotation in fp32; angle = float(pos) * inv_freq in fp32 (one rounding,
// no FMA contraction, as HF's fp32 outer product) and accurate sincosf (not __sinf: angles reach
// 32768 rad); one bf16 rounding at the end (HF's bf16 path rounds after the norm, the weight and
// each rope term).
#pragma once

#include <vector>

#include "common.cuh"

namespace qsearch {

// The 64 inverse frequencies of head_dim 128 for rope_theta, exactly as transformers computes
// them: 1.0 / (theta ** (arange(0, 128, 2).float() / 128)) in float32.
std::vector<float> rope_inv_freq(double theta, int head_dim);

Status launch_qk_norm_rope(bf16* qkv, int num_tokens, int num_q_heads, int num_kv_heads,
                           const int32_t* positions, const float* inv_freq, const float* q_weight,
                           const float* k_weight, float eps, cudaStream_t stream);

}  // namespace qsearch
