// Union-find clusters, keepers (first seen / longest) and the keep-list.
#include "dedup/clusters.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>

namespace qsearch {
namespace {

SimilarPair pr(int64_t i, int64_t j, float s = 0.95f) { return SimilarPair{i, j, s}; }

TEST(UnionFind, UniteAndFind) {
  UnionFind uf(6);
  EXPECT_TRUE(uf.unite(0, 1));
  EXPECT_TRUE(uf.unite(2, 3));
  EXPECT_FALSE(uf.unite(1, 0));
  EXPECT_TRUE(uf.unite(1, 3));
  EXPECT_EQ(uf.find(0), uf.find(2));
  EXPECT_NE(uf.find(0), uf.find(4));
  EXPECT_EQ(uf.size_of(3), 4);
  EXPECT_EQ(uf.size_of(5), 1);
}

TEST(Clusters, ChainsAndKeepFirst) {
  // 0-3, 3-7 (chain through 3), 2-5, 9 alone; 10 documents.
  std::vector<SimilarPair> pairs = {pr(3, 7, 0.93f), pr(0, 3, 0.97f), pr(2, 5, 0.99f)};
  auto clusters = cluster_pairs(10, pairs, KeepPolicy::kFirst);
  ASSERT_EQ(clusters.size(), 2u);
  EXPECT_EQ(clusters[0].members, (std::vector<int64_t>{0, 3, 7}));
  EXPECT_EQ(clusters[0].keep, 0);
  ASSERT_EQ(clusters[0].pairs.size(), 2u);
  EXPECT_EQ(clusters[0].pairs[0].i, 0);  // sorted by (i, j)
  EXPECT_EQ(clusters[0].pairs[1].i, 3);
  EXPECT_EQ(clusters[1].members, (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(clusters[1].keep, 2);
  EXPECT_EQ(keep_list(10, clusters), (std::vector<int64_t>{0, 1, 2, 4, 6, 8, 9}));
}

TEST(Clusters, KeepLongestWithTiesToFirst) {
  std::vector<SimilarPair> pairs = {pr(0, 1), pr(1, 2), pr(3, 4), pr(5, 6)};
  std::vector<int64_t> lengths = {10, 30, 30, 5, 4, 7, 7};
  auto clusters = cluster_pairs(7, pairs, KeepPolicy::kLongest, lengths);
  ASSERT_EQ(clusters.size(), 3u);
  EXPECT_EQ(clusters[0].keep, 1);  // 30 and 30: the first seen of the longest
  EXPECT_EQ(clusters[1].keep, 3);  // 5 > 4
  EXPECT_EQ(clusters[2].keep, 5);  // tie: first seen
  EXPECT_EQ(keep_list(7, clusters), (std::vector<int64_t>{1, 3, 5}));
}

TEST(Clusters, NoPairsMeansEverythingKept) {
  auto clusters = cluster_pairs(4, {}, KeepPolicy::kFirst);
  EXPECT_TRUE(clusters.empty());
  EXPECT_EQ(keep_list(4, clusters), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_TRUE(keep_list(0, {}).empty());
}

// Random graphs against a plain depth-first search of the components.
TEST(Clusters, RandomGraphsMatchDepthFirstSearch) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 20; ++round) {
    const int n = 50 + static_cast<int>(rng() % 300);
    const int edges = static_cast<int>(rng() % (n / 2 + 1));
    std::vector<SimilarPair> pairs;
    std::vector<std::vector<int>> adj(n);
    for (int e = 0; e < edges; ++e) {
      int a = static_cast<int>(rng() % n), b = static_cast<int>(rng() % n);
      if (a == b) continue;
      if (a > b) std::swap(a, b);
      pairs.push_back(pr(a, b));
      adj[a].push_back(b);
      adj[b].push_back(a);
    }
    std::vector<int64_t> lengths(n);
    for (auto& l : lengths) l = static_cast<int64_t>(rng() % 20);
    std::vector<int> comp(n, -1);
    std::vector<std::vector<int64_t>> want;
    for (int s = 0; s < n; ++s) {
      if (comp[s] >= 0) continue;
      std::vector<int64_t> members;
      std::function<void(int)> dfs = [&](int v) {
        comp[v] = s;
        members.push_back(v);
        for (int w : adj[v])
          if (comp[w] < 0) dfs(w);
      };
      dfs(s);
      std::sort(members.begin(), members.end());
      if (members.size() >= 2) want.push_back(members);
    }
    auto got = cluster_pairs(n, pairs, KeepPolicy::kLongest, lengths);
    ASSERT_EQ(got.size(), want.size());
    size_t pair_count = 0;
    std::vector<char> kept(n, 1);
    for (size_t c = 0; c < got.size(); ++c) {
      EXPECT_EQ(got[c].members, want[c]);
      // The keeper: the longest, ties to the smallest index.
      int64_t best = want[c][0];
      for (int64_t m : want[c])
        if (lengths[m] > lengths[best]) best = m;
      EXPECT_EQ(got[c].keep, best);
      for (int64_t m : want[c]) kept[m] = m == best;
      pair_count += got[c].pairs.size();
      for (const SimilarPair& p : got[c].pairs) {
        EXPECT_TRUE(std::binary_search(want[c].begin(), want[c].end(), p.i));
        EXPECT_TRUE(std::binary_search(want[c].begin(), want[c].end(), p.j));
      }
    }
    EXPECT_EQ(pair_count, pairs.size());
    std::vector<int64_t> want_keep;
    for (int i = 0; i < n; ++i)
      if (kept[i]) want_keep.push_back(i);
    EXPECT_EQ(keep_list(n, got), want_keep);
  }
}

}  // namespace
}  // namespace qsearch
