// The CPU candidate pass: FAISS's exhaustive range search (the engine of
// IndexFlatIP::range_search: BLAS sgemm in blocks plus a result handler) over normalised
// vectors, one block of query rows against the rows from the block's first row on, so the
// n x n product is only half computed and never stored.
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/utils/distances.h>

#include <chrono>
#include <exception>

#include "dedup/join_internal.h"

namespace qsearch {

Status cpu_join_candidates(const float* normalized, int64_t n, int dim, float threshold_lo,
                           const SimilarityJoinOptions& options, CandidateSink* sink,
                           JoinStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t block = options.cpu_block_rows > 0 ? options.cpu_block_rows : 4096;
  const int64_t nblocks = (n + block - 1) / block;
  const int64_t all_pairs = n * (n - 1) / 2;
  int64_t done_pairs = 0;
  stats->device = "cpu (FAISS)";
  std::vector<SimilarPair> found;
  for (int64_t kb = 0; kb < nblocks; ++kb) {
    // work_fraction < 1 (benchmarks): an evenly spread sample of the query blocks.
    const double f = options.work_fraction;
    if (f < 1.0 && static_cast<int64_t>((kb + 1) * f) == static_cast<int64_t>(kb * f)) continue;
    if (sink->cancelled()) return cancelled("similarity join cancelled");
    if (sink->should_stop()) break;
    const int64_t a0 = kb * block;
    const int64_t nq = std::min(block, n - a0);
    faiss::RangeSearchResult result(static_cast<size_t>(nq));
    try {
      // Queries a0 .. a0+nq-1 against rows a0 .. n-1 (the block's own rows included).
      faiss::range_search_inner_product(normalized + a0 * dim, normalized + a0 * dim,
                                        static_cast<size_t>(dim), static_cast<size_t>(nq),
                                        static_cast<size_t>(n - a0), threshold_lo, &result);
    } catch (const std::exception& e) {
      return internal_error(std::string("FAISS range search failed: ") + e.what());
    }
    found.clear();
    for (int64_t q = 0; q < nq; ++q) {
      const int64_t i = a0 + q;
      for (size_t e = result.lims[q]; e < result.lims[q + 1]; ++e) {
        const int64_t j = a0 + result.labels[e];
        if (j > i) found.push_back(SimilarPair{i, j, result.distances[e]});
      }
    }
    // Pairs (i, j) with i in the block and j > i.
    const int64_t compared = nq * (n - a0) - nq * (nq + 1) / 2;
    done_pairs += compared;
    ++stats->block_pairs;
    QS_RETURN_IF_ERROR(sink->add(found.data(), found.size(), compared));
  }
  if (sink->cancelled()) return cancelled("similarity join cancelled");
  stats->work_done = all_pairs > 0 ? static_cast<double>(done_pairs) / all_pairs : 1.0;
  stats->compare_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return Status::ok();
}

}  // namespace qsearch
