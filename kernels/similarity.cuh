// All-pairs similarity with a fused threshold filter (near-duplicate detection).
//
// Layout: a block of vectors is bf16, row-major, `ld` elements per row (ld % 8 == 0), the
// first dim_pad components used (dim_pad % 32 == 0; components past the real dim are zero).
// Buffers hold round_up(rows, 128) rows: the kernels read whole 128-row tiles (the padding
// rows must be finite, zero is best) and never emit a padding row.
//
// Output: every (i, j, score) with score >= threshold is appended to out[] at a slot taken
// from the device counter *count (the caller zeroes it before the launch). Slots past
// `capacity` are dropped but still counted, so after the launch *count > capacity means
// "overflow: grow the buffer to *count and run again". Order of the pairs is unspecified.
// With `triangular` (a and b are the same block) only j > i is emitted.
//
// Numerics: bf16 products accumulated in fp32 on the tensor cores (mma.sync m16n8k16);
// the score of unit vectors differs from the fp32 dot of the unrounded inputs by at most
// 2u + u^2 + dim_pad * 2^-22 with u = 2^-8 (bf16 unit roundoff), about 0.0082 at 1024 dims.
// The filter path stores the tile in bf16 first, which adds u * |score| on top.
// Callers that need an exact answer filter with threshold - margin and re-check on the host.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace qsearch {

// One hit: row i of block a, row j of block b (block-local indices), score in fp32.
struct SimPair {
  uint32_t i;
  uint32_t j;
  float score;
};

inline constexpr int kSimilarityTileRows = 128;  // rows of a and b read per tile
inline constexpr int kSimilarityDimAlign = 32;   // dim_pad must be a multiple of this

// Fused kernel: tensor-core products of 128x128 tiles with the filter in the epilogue; the
// score matrix never exists in memory. rows_a, rows_b <= 2^31 - 1.
cudaError_t launch_similarity_threshold(const void* a, int64_t rows_a, const void* b,
                                        int64_t rows_b, int dim_pad, int64_t ld, float threshold,
                                        bool triangular, SimPair* out, uint64_t capacity,
                                        unsigned long long* count, cudaStream_t stream);

// Filter over one materialised score tile c (bf16, row-major, ldc elements per row,
// ldc % 8 == 0, rows x round_up(cols, 8) readable), as written by a cuBLAS product of two
// blocks. Same output contract as above.
cudaError_t launch_threshold_filter_bf16(const void* c, int64_t rows, int64_t cols, int64_t ldc,
                                         float threshold, bool triangular, SimPair* out,
                                         uint64_t capacity, unsigned long long* count,
                                         cudaStream_t stream);

}  // namespace qsearch
