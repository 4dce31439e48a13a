// A second, independent GPU brute force for the tests: plain fp32 FMAs on the CUDA cores
// (no tensor cores, no bf16), every pair of the upper triangle, then the fp64 re-check on the
// host. Only in CUDA builds (gpu_reference_test.cu).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dedup/similarity_join.h"

namespace qsearch::dedup_test {

// Every pair (i < j) with reference_cosine >= threshold; fp32 candidates above
// threshold - 1e-3 (fp32 error at 1024 dims is below 1e-4). Empty error string on success.
std::string gpu_brute_force_pairs(const float* x, int64_t n, int dim, double threshold,
                                  std::vector<SimilarPair>* out);

}  // namespace qsearch::dedup_test
