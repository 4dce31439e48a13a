// SwiGLU on the output of the fused gate|up GEMM: out = silu(gate) * up.
//
// Layout: gate_up [num_tokens, 2 * inter] bf16 row-major (columns 0..inter-1 are gate_proj,
// inter..2*inter-1 up_proj, the order in which the engine stacks the weights); out
// [num_tokens, inter] bf16 row-major.
// Limits: inter a multiple of 8. Numerics: silu(g) = g / (1 + exp(-g)) and the product in fp32,
// one bf16 rounding (HF's bf16 path rounds silu(g) to bf16 before the product).
#pragma once

#include "common.cuh"

namespace qsearch {

Status launch_swiglu(const bf16* gate_up, int num_tokens, int inter, bf16* out,
                     cudaStream_t stream);

}  // namespace qsearch
