// Device-side fills: random bf16 weights for benchmarks (an 8B model would be 16 GB on disk, so
// the benchmark engine draws its weights on the GPU) and constants.
//
// launch_fill_random_bf16: out[i] = bf16(std * z_i) with z_i ~ approximately N(0, 1) (sum of
// four uniform hashes of (seed, i), rescaled), deterministic for a seed; std 0.02 is transformers'
// initializer_range. first: index of out[0] in the stream of values (filling a range in pieces,
// first = its offset, gives the same values as one call). launch_fill_f32: out[i] = value.
#pragma once

#include "common.cuh"

namespace qsearch {

Status launch_fill_random_bf16(bf16* out, int64_t n, float std, uint64_t seed, cudaStream_t stream,
                               int64_t first = 0);
Status launch_fill_f32(float* out, int64_t n, float value, cudaStream_t stream);

}  // namespace qsearch
