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

// Scores each label of `labels` whose vector `get` finds (get copies it into the buffer and
// returns true; false for a label the index does not hold) against each query; writes the best
// k per query (padded with -1), as VectorIndex::search does (inner product, or squared L2).
// Large sets are split over a few threads.
Status exact_search(int64_t n, const float* queries, int d, IndexMetric metric, int k,
                    const std::vector<int64_t>& labels,
                    const std::function<bool(int64_t, float*)>& get, int64_t* out_labels,
                    float* out_distances);

}  // namespace qsearch::index_internal
