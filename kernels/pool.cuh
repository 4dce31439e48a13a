// Last-token pooling: the last layer's residual add and the final RMSNorm of each sequence's last
// token, MRL truncation to that sequence's dimension, L2 normalisation; fp32 output (backend.h's
// data contract). Only the n last rows are touched: no full pass over the batch.
//
// Layout: residual [*, hidden] fp32 row-major and delta [*, hidden] bf16 (the last layer's MLP
// output, added to the residual; nullptr for none);
// last_index [n] int32 rows of the last tokens; dims [n] int32 output dimensions in 1..hidden;
// norm_weight [hidden] fp32; out [n, hidden] fp32 row-major, components dims[i].. zero.
// l2_normalize false (the reranker's raw hidden state): out is the normed row itself, every
// component, no MRL truncation (dims ignored) and no L2 normalisation.
// Limits: hidden at most 8192. Numerics: fp32 throughout; the L2 norm is max(||y||, 1e-12) as
// torch.nn.functional.normalize.
#pragma once

#include "common.cuh"

namespace qsearch {

Status launch_last_token_pool(const float* residual, const bf16* delta, int hidden,
                              const int32_t* last_index, const int32_t* dims, int n,
                              const float* norm_weight, float eps, bool l2_normalize, float* out,
                              cudaStream_t stream);

}  // namespace qsearch
