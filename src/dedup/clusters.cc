#include "dedup/clusters.h"

#include <algorithm>
#include <numeric>

namespace qsearch {

UnionFind::UnionFind(int64_t n)
    : parent_(static_cast<size_t>(n)), size_(static_cast<size_t>(n), 1) {
  std::iota(parent_.begin(), parent_.end(), int64_t{0});
}

int64_t UnionFind::find(int64_t x) {
  while (parent_[x] != x) {
    parent_[x] = parent_[parent_[x]];  // path halving
    x = parent_[x];
  }
  return x;
}

bool UnionFind::unite(int64_t a, int64_t b) {
  a = find(a);
  b = find(b);
  if (a == b) return false;
  if (size_[a] < size_[b]) std::swap(a, b);
  parent_[b] = a;
  size_[a] += size_[b];
  return true;
}

std::vector<DuplicateCluster> cluster_pairs(int64_t n, const std::vector<SimilarPair>& pairs,
                                            KeepPolicy keep, const std::vector<int64_t>& lengths) {
  UnionFind uf(n);
  for (const SimilarPair& p : pairs) uf.unite(p.i, p.j);

  // Number the clusters in order of their first (smallest) member.
  std::vector<int64_t> cluster_of_root(static_cast<size_t>(n), -1);
  std::vector<DuplicateCluster> clusters;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t root = uf.find(i);
    if (uf.size_of(root) < 2) continue;
    int64_t& c = cluster_of_root[root];
    if (c < 0) {
      c = static_cast<int64_t>(clusters.size());
      clusters.emplace_back();
      clusters.back().members.reserve(static_cast<size_t>(uf.size_of(root)));
    }
    clusters[c].members.push_back(i);  // ascending, since i ascends
  }
  for (const SimilarPair& p : pairs) clusters[cluster_of_root[uf.find(p.i)]].pairs.push_back(p);

  const bool longest = keep == KeepPolicy::kLongest && static_cast<int64_t>(lengths.size()) == n;
  for (DuplicateCluster& c : clusters) {
    std::sort(c.pairs.begin(), c.pairs.end(), [](const SimilarPair& a, const SimilarPair& b) {
      return a.i != b.i ? a.i < b.i : a.j < b.j;
    });
    c.keep = c.members.front();
    if (longest) {
      for (int64_t m : c.members)
        if (lengths[m] > lengths[c.keep]) c.keep = m;  // strict: ties keep the first seen
    }
  }
  return clusters;
}

std::vector<int64_t> keep_list(int64_t n, const std::vector<DuplicateCluster>& clusters) {
  std::vector<char> dropped(static_cast<size_t>(n), 0);
  for (const DuplicateCluster& c : clusters)
    for (int64_t m : c.members)
      if (m != c.keep) dropped[m] = 1;
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    if (!dropped[i]) out.push_back(i);
  return out;
}

}  // namespace qsearch
