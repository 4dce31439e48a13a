// Block top-k selection over score rows (the GPU exact-search index, src/index/gpu_device.cc).
//
// Layout: scores are fp32, one row per query: query b's score of database row r at
// scores[b * ld + r], for r in [0, n). Selection keeps the k largest keys per query, where the
// key of row r is its score (inner product) or 2 * score - norms[r] (squared L2 ranks as
// -(|x|^2 - 2 q.x), the |q|^2 term being the same for every row). A row is a candidate only
// when its bit is set in `live` (one bit per row, bit r % 32 of word r / 32, indexed by the
// global row `row_base + r`) and, where filters[b] is not null, in filters[b] too.
//
// Output: the scores are cut into slices of `slice` rows; slice s of query b writes its best k
// (key, global row) pairs, best first, to out_keys / out_rows at b * out_ld + s * k (out_ld >=
// slices * k: several launches can fill one candidate row per query), padded with (-inf, -1). Keys
// are the fp32 values themselves: no rounding.
//
// Algorithm: each CTA reads its slice once (coalesced), appends keys above the running
// threshold to a shared buffer, and when the buffer nears full sorts it (bitonic) and keeps the
// best k, whose k-th key becomes the threshold. On random order the buffer fills only
// O(k log(slice / k)) times, so the pass runs at memory bandwidth. Limits: 1 <= k <= kTopkMaxK.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace qsearch {

inline constexpr int kTopkMaxK = 4096;

// Slices of `slice` rows (slice % 1024 == 0) of n score rows of each of `queries` queries.
// filters: `queries` device pointers (or null for none) to bitmaps over global rows; it may
// itself be null (no query filtered). norms: null for inner product, else per-row squared norms
// indexed by global row.
cudaError_t launch_topk_scores(const float* scores, int64_t ld, int64_t n, int queries,
                               int64_t row_base, const uint32_t* live,
                               const uint32_t* const* filters, const float* norms, int k,
                               int64_t slice, float* out_keys, int32_t* out_rows, int64_t out_ld,
                               cudaStream_t stream);

// Number of slices launch_topk_scores / launch_topk_merge write per query for m inputs.
inline int64_t topk_slices(int64_t m, int64_t slice) { return (m + slice - 1) / slice; }

// Merge step: per query, m candidate (key, row) pairs at in_keys / in_rows + b * m (rows < 0
// are padding and skipped), cut into slices of `slice`; writes the best k of each slice as
// above. Repeated until one slice remains, that slice's output is the answer.
cudaError_t launch_topk_merge(const float* in_keys, const int32_t* in_rows, int64_t m, int queries,
                              int k, int64_t slice, float* out_keys, int32_t* out_rows,
                              int64_t out_ld, cudaStream_t stream);

}  // namespace qsearch
