// Embedding gather: the first step of the forward pass.
//
// Layout: table is [vocab, hidden] bf16 row-major; ids holds num_tokens int32 token ids (already
// range-checked by the engine); out is the fp32 residual stream [num_tokens, hidden] row-major.
// Limits: hidden a multiple of 8 (16-byte loads). Numerics: exact (bf16 -> fp32 is exact).
#pragma once

#include "common.cuh"

namespace qsearch {

Status launch_embedding_gather(const bf16* table, const int32_t* ids, int num_tokens, int hidden,
                               float* out, cudaStream_t stream);

}  // namespace qsearch
