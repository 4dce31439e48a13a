// Exact top-k over an explicit label set (a selective filter resolved by the metadata index):
// every index type answers such a search by scoring only the accepted labels' vectors, so a
// filter matching 0.1% of a collection costs 0.1% of a flat scan, and HNSW/IVF keep exact
// recall where their graph or lists would be starved of matches.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "index/vector_index.h"

namespace qsearch::index_internal {

// The largest explicit label set an approximate index (HNSW, IVF) scans exactly instead of
// searching its structure with the filter as a selector.
int64_t exact_scan_limit(int64_t index_size);

// The vector of `label`: a pointer into the index's own storage (no copy), or `scratch` (d
// floats) filled by decoding it; nullptr when the index does not hold the label. Called from
// several threads at once, each with its own scratch.
using RowFn = std::function<const float*(int64_t label, float* scratch)>;

// Scores each label of `labels` that `row` finds against each query; writes the best k per
// query (padded with -1), as VectorIndex::search does (inner product, or squared L2). The scan
// is memory-bound (4 KB per row at 1024 dims): the next row is prefetched while one is scored,
// and sets above one grain of labels are split over the search pool (common/thread_pool.h),
// one part per grain, up to the pool's size.
Status exact_search(int64_t n, const float* queries, int d, IndexMetric metric, int k,
                    const std::vector<int64_t>& labels, const RowFn& row, int64_t* out_labels,
                    float* out_distances);

// Labels per part of a split exact scan (default 512); benchmarks sweep it. 0 restores the
// default.
void set_exact_scan_grain(int64_t labels);
int64_t exact_scan_grain();

}  // namespace qsearch::index_internal
