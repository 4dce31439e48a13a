// Test data for the similarity join: random vectors with planted near-duplicates, and a
// brute-force reference that shares no code with the library.
#pragma once

#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "dedup/similarity_join.h"

namespace qsearch::dedup_test {

struct PlantedSet {
  int64_t n = 0;
  int dim = 0;
  std::vector<float> x;  // n x dim, not normalised
  // Pairs (i < j) planted with cosine clearly above / within 1e-5..1e-2 of the threshold.
  std::vector<std::pair<int64_t, int64_t>> planted_above;
  std::vector<std::pair<int64_t, int64_t>> planted_near_above;  // t + 1e-5 .. t + 1e-3
  std::vector<std::pair<int64_t, int64_t>> planted_near_below;  // t - 1e-5 .. t - 8e-3
  int64_t zero_vector = -1;                                     // index of an all-zero row
};

// n random vectors (approximately Gaussian components, so the directions are close to
// uniform) plus planted pairs: near copies with cosine in [t + 0.005, 0.999], exact and
// scaled copies (cosine 1), pairs at t +- 1e-5 .. 1e-2 (inside the bf16 error band), chains
// a-b-c whose ends may fall below t, and one zero vector. Deterministic for a seed.
PlantedSet make_planted_set(int64_t n, int dim, double threshold, uint64_t seed);

// cos(a, b) in fp64: sum a_k b_k / (sqrt(sum a_k^2) sqrt(sum b_k^2)); 0 for a zero vector.
double reference_cosine(const float* a, const float* b, int dim);

// Every pair (i < j) with reference_cosine >= threshold: all n(n-1)/2 inner products in fp32
// through BLAS (cblas_sgemm, blocks of rows), those above threshold - 1e-3 re-checked in fp64.
std::vector<SimilarPair> brute_force_pairs_cpu(const float* x, int64_t n, int dim,
                                               double threshold);

std::set<std::pair<int64_t, int64_t>> pair_set(const std::vector<SimilarPair>& pairs);

// gtest assertions: same (i, j) set, sorted by (i, j), scores within 1e-6 of the reference.
void expect_same_pairs(const std::vector<SimilarPair>& got, const std::vector<SimilarPair>& want,
                       const char* what);

}  // namespace qsearch::dedup_test
