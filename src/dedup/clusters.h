// Near-duplicate clusters: connected components of the "similar" graph (union-find), one
// keeper per cluster, and the keep-list (every document that is not a dropped duplicate).
#pragma once

#include <cstdint>
#include <vector>

#include "dedup/similarity_join.h"

namespace qsearch {

// Disjoint sets over 0..n-1 with path halving and union by size. Not thread-safe.
class UnionFind {
 public:
  explicit UnionFind(int64_t n);
  int64_t find(int64_t x);
  // Joins the sets of a and b; false if they were already one set.
  bool unite(int64_t a, int64_t b);
  int64_t size_of(int64_t x) { return size_[find(x)]; }

 private:
  std::vector<int64_t> parent_;
  std::vector<int64_t> size_;
};

enum class KeepPolicy {
  kFirst,    // the member seen first in the input (smallest index)
  kLongest,  // the longest text (lengths[i]); ties go to the first seen
};

struct DuplicateCluster {
  int64_t keep = 0;                // index of the keeper
  std::vector<int64_t> members;    // ascending; at least 2
  std::vector<SimilarPair> pairs;  // the edges found inside the cluster, sorted by (i, j)
};

// Clusters of documents joined (transitively) by pairs, ordered by their first member.
// Documents in no pair form no cluster. lengths (one per document) is needed for kLongest.
std::vector<DuplicateCluster> cluster_pairs(int64_t n, const std::vector<SimilarPair>& pairs,
                                            KeepPolicy keep,
                                            const std::vector<int64_t>& lengths = {});

// Every document to keep, ascending: those in no cluster plus each cluster's keeper.
std::vector<int64_t> keep_list(int64_t n, const std::vector<DuplicateCluster>& clusters);

}  // namespace qsearch
