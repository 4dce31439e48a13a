// VectorIndex implementations against brute force: exactness (flat), recall (HNSW, IVF),
// removal, replacement, label filters, IVF training, serialisation, and index files.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>
#include <set>

#include "index/distances.h"
#include "index/hnsw_index.h"
#include "index/index_file.h"
#include "index/ivf_index.h"
#include "index/vector_index.h"

namespace qsearch {
namespace {

std::vector<float> random_vectors(int64_t n, int d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> x(n * d);
  for (auto& v : x) v = g(rng);
  return x;
}

float score(const float* a, const float* b, int d, IndexMetric m) {
  float s = 0;
  for (int i = 0; i < d; ++i) s += m == IndexMetric::kL2 ? (a[i] - b[i]) * (a[i] - b[i]) : a[i] * b[i];
  return s;
}

// Top-k labels by brute force over the rows whose label passes `keep`.
std::vector<int64_t> brute_force(const std::vector<float>& x, const std::vector<int64_t>& labels,
                                 const float* q, int d, int k, IndexMetric m,
                                 const std::function<bool(int64_t)>& keep = nullptr) {
  std::vector<std::pair<float, int64_t>> all;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (keep && !keep(labels[i])) continue;
    float s = score(&x[i * d], q, d, m);
    all.emplace_back(m == IndexMetric::kL2 ? s : -s, labels[i]);
  }
  std::sort(all.begin(), all.end());
  std::vector<int64_t> out;
  for (int i = 0; i < k && i < static_cast<int>(all.size()); ++i) out.push_back(all[i].second);
  return out;
}

std::vector<int64_t> search_labels(const VectorIndex& index, const float* q, int k,
                                   const LabelFilter* filter = nullptr, IndexSearchParams p = {}) {
  std::vector<int64_t> labels(k);
  std::vector<float> dist(k);
  Status s = index.search(1, q, k, p, filter, labels.data(), dist.data());
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  labels.erase(std::remove(labels.begin(), labels.end(), -1), labels.end());
  return labels;
}

double recall_at_k(const VectorIndex& index, const std::vector<float>& x,
                   const std::vector<int64_t>& labels, const std::vector<float>& queries, int nq,
                   int d, int k, IndexMetric m) {
  double hit = 0;
  for (int i = 0; i < nq; ++i) {
    auto truth = brute_force(x, labels, &queries[i * d], d, k, m);
    auto got = search_labels(index, &queries[i * d], k);
    std::set<int64_t> t(truth.begin(), truth.end());
    for (int64_t l : got) hit += t.count(l);
  }
  return hit / (static_cast<double>(nq) * k);
}

std::vector<int64_t> make_labels(int64_t n, int64_t base = 1000) {
  std::vector<int64_t> l(n);
  for (int64_t i = 0; i < n; ++i) l[i] = base + 3 * i;
  return l;
}

VectorIndexConfig config(const std::string& type, int d,
                         IndexMetric metric = IndexMetric::kInnerProduct) {
  VectorIndexConfig c;
  c.type = type;
  c.dimension = d;
  c.metric = metric;
  return c;
}

std::unique_ptr<VectorIndex> make(const VectorIndexConfig& c) {
  auto r = make_vector_index(c);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return std::move(r).value();
}

TEST(Distances, KernelsMatchDoublePrecisionForAllTails) {
  std::cout << "[distances] SIMD (AVX2+FMA): " << index_internal::simd_available() << "\n";
  for (int d : {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1024}) {
    auto a = random_vectors(1, d, 100 + d), b = random_vectors(1, d, 200 + d);
    double dot = 0, l2 = 0;
    for (int i = 0; i < d; ++i) {
      dot += static_cast<double>(a[i]) * b[i];
      l2 += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    }
    EXPECT_NEAR(index_internal::dot_product(a.data(), b.data(), d), dot, 1e-4 * std::max(1.0, std::sqrt(d * 1.0))) << d;
    EXPECT_NEAR(index_internal::l2_squared(a.data(), b.data(), d), l2, 1e-4 * std::max(1.0, l2)) << d;
  }
  auto x = random_vectors(37, 19, 300);
  auto q = random_vectors(1, 19, 301);
  std::vector<float> scores(37);
  index_internal::inner_products(x.data(), 37, 19, q.data(), scores.data());
  for (int j = 0; j < 37; ++j) {
    EXPECT_NEAR(scores[j], index_internal::dot_product(&x[j * 19], q.data(), 19), 1e-4);
  }
}

class FlatExact : public ::testing::TestWithParam<IndexMetric> {};

TEST_P(FlatExact, EqualsBruteForceWithRemovesReplacesAndFilters) {
  const int d = 24, n = 1500, k = 10;
  const IndexMetric m = GetParam();
  auto x = random_vectors(n, d, 1);
  auto labels = make_labels(n);
  auto index = make(config("flat", d, m));
  ASSERT_TRUE(index->add(n, labels.data(), x.data()).is_ok());
  EXPECT_EQ(index->size(), n);
  auto q = random_vectors(20, d, 2);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(search_labels(*index, &q[i * d], k), brute_force(x, labels, &q[i * d], d, k, m));
  }
  // Remove every 5th label (and one unknown label: ignored).
  std::vector<int64_t> removed;
  for (int i = 0; i < n; i += 5) removed.push_back(labels[i]);
  removed.push_back(999999);
  ASSERT_TRUE(index->remove(removed.size(), removed.data()).is_ok());
  EXPECT_EQ(index->size(), n - (n + 4) / 5);
  std::set<int64_t> gone(removed.begin(), removed.end());
  auto live = [&](int64_t l) { return gone.count(l) == 0; };
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(search_labels(*index, &q[i * d], k), brute_force(x, labels, &q[i * d], d, k, m, live));
  }
  // Replace label[1] with the query itself: it must come first.
  ASSERT_TRUE(index->add(1, &labels[1], &q[0]).is_ok());
  EXPECT_EQ(index->size(), n - (n + 4) / 5);
  std::copy(&q[0], &q[d], &x[1 * d]);
  EXPECT_EQ(search_labels(*index, &q[0], 1)[0], labels[1]);
  // Label filter: only labels divisible by 2.
  PredicateFilter even([](int64_t l) { return l % 2 == 0; });
  for (int i = 0; i < 20; ++i) {
    auto keep = [&](int64_t l) { return live(l) && l % 2 == 0; };
    EXPECT_EQ(search_labels(*index, &q[i * d], k, &even), brute_force(x, labels, &q[i * d], d, k, m, keep));
  }
  // k larger than the index: padded with -1, all live vectors returned.
  auto all = search_labels(*index, &q[0], 1000);
  EXPECT_EQ(static_cast<int64_t>(all.size()), std::min<int64_t>(1000, index->size()));
}

INSTANTIATE_TEST_SUITE_P(Metrics, FlatExact, ::testing::Values(IndexMetric::kInnerProduct, IndexMetric::kL2));

TEST(Hnsw, RecallTombstonesAndRebuild) {
  const int d = 32, n = 4000, k = 10, nq = 100;
  auto x = random_vectors(n, d, 3);
  auto labels = make_labels(n);
  VectorIndexConfig c = config("hnsw", d, IndexMetric::kL2);
  c.hnsw_m = 16;
  c.hnsw_ef_construction = 100;
  c.hnsw_ef_search = 64;
  auto index = make(c);
  ASSERT_TRUE(index->add(n, labels.data(), x.data()).is_ok());
  // add() only fills the pending buffer; absorb_pending() builds the graph.
  EXPECT_EQ(index->pending(), n);
  ASSERT_TRUE(index->absorb_pending(n).is_ok());
  EXPECT_EQ(index->pending(), 0);
  auto q = random_vectors(nq, d, 4);
  const double r = recall_at_k(*index, x, labels, q, nq, d, k, IndexMetric::kL2);
  EXPECT_GE(r, 0.9);
  // Tombstones (10%): removed labels never come back; no rebuild yet.
  auto* hnsw = dynamic_cast<HnswIndex*>(index.get());
  ASSERT_NE(hnsw, nullptr);
  std::vector<int64_t> removed(labels.begin(), labels.begin() + n / 10);
  ASSERT_TRUE(index->remove(removed.size(), removed.data()).is_ok());
  EXPECT_EQ(hnsw->tombstones(), n / 10);
  EXPECT_FALSE(index->wants_optimize());
  std::set<int64_t> gone(removed.begin(), removed.end());
  for (int i = 0; i < nq; ++i) {
    for (int64_t l : search_labels(*index, &q[i * d], k)) EXPECT_EQ(gone.count(l), 0u);
  }
  // Past the rebuild fraction (25%): optimisation is due; it rebuilds without tombstones.
  std::vector<int64_t> more(labels.begin() + n / 10, labels.begin() + n * 3 / 10);
  ASSERT_TRUE(index->remove(more.size(), more.data()).is_ok());
  EXPECT_TRUE(index->wants_optimize());
  EXPECT_EQ(hnsw->tombstones(), n * 3 / 10);
  std::vector<int64_t> live_labels;
  std::vector<float> live_vectors;
  ASSERT_TRUE(index->export_live(&live_labels, &live_vectors).is_ok());
  EXPECT_EQ(static_cast<int64_t>(live_labels.size()), n - n * 3 / 10);
  EXPECT_EQ(live_labels.front(), labels[n * 3 / 10]);
  EXPECT_TRUE(std::equal(live_vectors.begin(), live_vectors.begin() + d, x.begin() + (n * 3 / 10) * d));
  ASSERT_TRUE(index->optimize().is_ok());
  EXPECT_FALSE(index->wants_optimize());
  EXPECT_EQ(hnsw->tombstones(), 0);
  EXPECT_EQ(index->stored(), n - n * 3 / 10);
  EXPECT_EQ(index->size(), n - n * 3 / 10);
  std::vector<float> rest_x(x.begin() + (n * 3 / 10) * d, x.end());
  std::vector<int64_t> rest_l(labels.begin() + n * 3 / 10, labels.end());
  EXPECT_GE(recall_at_k(*index, rest_x, rest_l, q, nq, d, k, IndexMetric::kL2), 0.9);
  // Replacing a label moves it: searching its new vector finds it first.
  ASSERT_TRUE(index->add(1, &rest_l[0], &q[0]).is_ok());
  EXPECT_EQ(search_labels(*index, &q[0], 1)[0], rest_l[0]);
  EXPECT_EQ(index->size(), static_cast<int64_t>(rest_l.size()));
  // Filter: only labels in a small set.
  std::set<int64_t> allowed(rest_l.begin(), rest_l.begin() + 50);
  PredicateFilter f([&](int64_t l) { return allowed.count(l) > 0; });
  for (int64_t l : search_labels(*index, &q[5 * d], k, &f)) EXPECT_EQ(allowed.count(l), 1u);
}

// The pending buffer (vectors added but not yet in the graph) is searched exactly and merged
// with the graph's results; removal, replacement, filters and serialisation cover it.
TEST(Hnsw, PendingBufferSearchedExactlyRemovedAndSaved) {
  const int d = 16, n = 2000, in_graph = 1500, k = 10;
  for (IndexMetric m : {IndexMetric::kL2, IndexMetric::kInnerProduct}) {
    auto x = random_vectors(n, d, 21);
    auto labels = make_labels(n);
    VectorIndexConfig c = config("hnsw", d, m);
    c.hnsw_m = 16;
    c.hnsw_ef_search = 4000;  // exhaustive on this graph: results comparable to brute force
    auto index = make(c);
    ASSERT_TRUE(index->add(in_graph, labels.data(), x.data()).is_ok());
    ASSERT_TRUE(index->absorb_pending(in_graph).is_ok());
    ASSERT_TRUE(index->add(n - in_graph, labels.data() + in_graph, x.data() + in_graph * d).is_ok());
    EXPECT_EQ(index->pending(), n - in_graph);
    EXPECT_EQ(index->size(), n);
    // Replace a graph vector (moves to pending) and a pending one (replaced in place); remove
    // one of each.
    auto fresh = random_vectors(2, d, 22);
    std::copy(fresh.begin(), fresh.begin() + d, x.begin() + 10 * d);
    std::copy(fresh.begin() + d, fresh.end(), x.begin() + (in_graph + 10) * d);
    ASSERT_TRUE(index->add(1, &labels[10], &x[10 * d]).is_ok());
    ASSERT_TRUE(index->add(1, &labels[in_graph + 10], &x[(in_graph + 10) * d]).is_ok());
    const int64_t gone[2] = {labels[20], labels[in_graph + 20]};
    ASSERT_TRUE(index->remove(2, gone).is_ok());
    EXPECT_FALSE(index->contains(gone[0]));
    EXPECT_FALSE(index->contains(gone[1]));
    EXPECT_EQ(index->size(), n - 2);
    EXPECT_EQ(index->pending(), n - in_graph + 1 - 1);
    auto live = [&](int64_t l) { return l != gone[0] && l != gone[1]; };
    std::vector<int64_t> set;
    for (int i = 0; i < n; i += 7) set.push_back(labels[i]);
    LabelSetFilter selective(set);
    PredicateFilter even([](int64_t l) { return l % 2 == 0; });
    auto q = random_vectors(20, d, 23);
    auto check = [&](const VectorIndex& idx, const char* when) {
      for (int i = 0; i < 20; ++i) {
        EXPECT_EQ(search_labels(idx, &q[i * d], k), brute_force(x, labels, &q[i * d], d, k, m, live)) << when;
        EXPECT_EQ(search_labels(idx, &q[i * d], k, &even),
                  brute_force(x, labels, &q[i * d], d, k, m,
                              [&](int64_t l) { return live(l) && l % 2 == 0; })) << when;
        EXPECT_EQ(search_labels(idx, &q[i * d], k, &selective),
                  brute_force(x, labels, &q[i * d], d, k, m,
                              [&](int64_t l) { return live(l) && selective.accepts(l); })) << when;
      }
      // Each replaced vector is found first by itself (L2: its own nearest neighbour).
      if (m == IndexMetric::kL2) {
        EXPECT_EQ(search_labels(idx, &x[10 * d], 1)[0], labels[10]) << when;
        EXPECT_EQ(search_labels(idx, &x[(in_graph + 10) * d], 1)[0], labels[in_graph + 10]) << when;
      }
    };
    check(*index, "graph + pending");
    // Saved and restored with its pending vectors.
    std::string bytes;
    ASSERT_TRUE(index->serialize(&bytes).is_ok());
    auto back = make_vector_index_from(c, bytes);
    ASSERT_TRUE(back.is_ok()) << back.status().to_string();
    EXPECT_EQ((*back)->pending(), index->pending());
    EXPECT_EQ((*back)->size(), index->size());
    check(**back, "restored");
    // Absorbed in slices: the same results at every step.
    ASSERT_TRUE(index->absorb_pending(100).is_ok());
    EXPECT_EQ(index->pending(), n - in_graph - 100);
    check(*index, "after a slice");
    ASSERT_TRUE(index->optimize().is_ok());  // rebuild (tombstones) + everything pending
    EXPECT_EQ(index->pending(), 0);
    EXPECT_EQ(index->size(), n - 2);
    check(*index, "optimised");
  }
}

TEST(Ivf, FlatUntilTrainedThenRecallRemoveAndFilter) {
  const int d = 32, k = 10, nq = 100;
  const int n = 5000;
  auto x = random_vectors(n, d, 5);
  auto labels = make_labels(n);
  VectorIndexConfig c = config("ivf", d, IndexMetric::kInnerProduct);
  c.ivf_train_min = 1000;
  c.ivf_nprobe = 16;
  auto index = make(c);
  auto* ivf = dynamic_cast<IvfIndex*>(index.get());
  ASSERT_NE(ivf, nullptr);
  ASSERT_TRUE(index->add(999, labels.data(), x.data()).is_ok());
  EXPECT_EQ(index->type(), "flat");
  EXPECT_FALSE(ivf->trained());
  auto q = random_vectors(nq, d, 6);
  std::vector<float> first_x(x.begin(), x.begin() + 999 * d);
  std::vector<int64_t> first_l(labels.begin(), labels.begin() + 999);
  EXPECT_EQ(search_labels(*index, &q[0], k), brute_force(first_x, first_l, &q[0], d, k, c.metric));
  EXPECT_FALSE(index->wants_optimize());
  // The 1000th vector makes training due; optimize() trains on all 1000 held vectors.
  ASSERT_TRUE(index->add(1, labels.data() + 999, x.data() + 999 * d).is_ok());
  EXPECT_EQ(index->type(), "flat");
  EXPECT_TRUE(index->wants_optimize());
  ASSERT_TRUE(index->optimize().is_ok());
  EXPECT_FALSE(index->wants_optimize());
  EXPECT_EQ(index->type(), "ivf");
  EXPECT_TRUE(ivf->trained());
  EXPECT_EQ(ivf->nlist(), 25);  // min(4*sqrt(1000), 1000/39)
  EXPECT_EQ(index->size(), 1000);
  ASSERT_TRUE(index->add(n - 1000, labels.data() + 1000, x.data() + 1000 * d).is_ok());
  EXPECT_EQ(index->size(), n);
  const double recall = recall_at_k(*index, x, labels, q, nq, d, k, c.metric);
  std::cout << "[ivf] recall@10 nlist 25 nprobe 16, 5000 random vectors: " << recall << "\n";
  EXPECT_GE(recall, 0.9);
  // nprobe = nlist is exact.
  IndexSearchParams all;
  all.nprobe = 1000;
  EXPECT_EQ(search_labels(*index, &q[0], k, nullptr, all), brute_force(x, labels, &q[0], d, k, c.metric));
  // Remove and replace.
  std::vector<int64_t> removed(labels.begin(), labels.begin() + 500);
  ASSERT_TRUE(index->remove(removed.size(), removed.data()).is_ok());
  EXPECT_EQ(index->size(), n - 500);
  EXPECT_FALSE(index->contains(labels[0]));
  std::set<int64_t> gone(removed.begin(), removed.end());
  for (int i = 0; i < nq; ++i) {
    for (int64_t l : search_labels(*index, &q[i * d], k, nullptr, all)) EXPECT_EQ(gone.count(l), 0u);
  }
  ASSERT_TRUE(index->add(1, &labels[600], &q[0]).is_ok());
  EXPECT_EQ(index->size(), n - 500);
  EXPECT_EQ(search_labels(*index, &q[0], 1, nullptr, all)[0], labels[600]);
  PredicateFilter odd([](int64_t l) { return l % 2 == 1; });
  for (int64_t l : search_labels(*index, &q[1 * d], k, &odd)) EXPECT_EQ(l % 2, 1);
}

TEST(Ivf, TrainingOnALargeFirstBatchUsesAllOfIt) {
  const int d = 16, n = 5000;
  auto x = random_vectors(n, d, 9);
  auto labels = make_labels(n);
  VectorIndexConfig c = config("ivf", d, IndexMetric::kL2);
  c.ivf_train_min = 1000;
  IvfIndex index(c);
  ASSERT_TRUE(index.add(n, labels.data(), x.data()).is_ok());
  ASSERT_TRUE(index.optimize().is_ok());
  EXPECT_TRUE(index.trained());
  EXPECT_EQ(index.nlist(), 128);  // min(4*sqrt(5000), 5000/39)
  EXPECT_EQ(index.size(), n);
  // Exported vectors are the ones added (order follows the lists).
  std::vector<int64_t> out_labels;
  std::vector<float> out_vectors;
  ASSERT_TRUE(index.export_live(&out_labels, &out_vectors).is_ok());
  ASSERT_EQ(out_labels.size(), static_cast<size_t>(n));
  for (size_t i = 0; i < out_labels.size(); i += 97) {
    const int64_t row = (out_labels[i] - 1000) / 3;
    EXPECT_TRUE(std::equal(&out_vectors[i * d], &out_vectors[(i + 1) * d], &x[row * d]));
  }
  // Probing every list is exact.
  auto q = random_vectors(5, d, 10);
  IndexSearchParams all;
  all.nprobe = 128;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(search_labels(index, &q[i * d], 10, nullptr, all),
              brute_force(x, labels, &q[i * d], d, 10, c.metric));
  }
}

// Retraining: once the index holds ivf_retrain_factor times the vectors it was trained on,
// optimize() trains again on all of them; results stay right and the count survives a save.
TEST(Ivf, RetrainsWhenGrownPastTheFactor) {
  const int d = 16, k = 5;
  auto x = random_vectors(800, d, 31);
  auto labels = make_labels(800);
  VectorIndexConfig c = config("ivf", d, IndexMetric::kL2);
  c.ivf_nlist = 4;
  c.ivf_train_min = 200;
  c.ivf_nprobe = 4;  // every list: exact
  auto index = make(c);
  ASSERT_TRUE(index->add(200, labels.data(), x.data()).is_ok());
  ASSERT_TRUE(index->wants_optimize());
  ASSERT_TRUE(index->optimize().is_ok());
  EXPECT_EQ(index->type(), "ivf");
  EXPECT_EQ(index->trained_size(), 200);
  ASSERT_TRUE(index->add(599, labels.data() + 200, x.data() + 200 * d).is_ok());
  EXPECT_FALSE(index->wants_optimize());  // 799 < 4 * 200
  ASSERT_TRUE(index->add(1, labels.data() + 799, x.data() + 799 * d).is_ok());
  EXPECT_TRUE(index->wants_optimize());
  ASSERT_TRUE(index->optimize().is_ok());
  EXPECT_FALSE(index->wants_optimize());
  EXPECT_EQ(index->trained_size(), 800);
  EXPECT_EQ(index->size(), 800);
  auto q = random_vectors(10, d, 32);
  for (int i = 0; i < 10; ++i)
    EXPECT_EQ(search_labels(*index, &q[i * d], k), brute_force(x, labels, &q[i * d], d, k, c.metric));
  std::string bytes;
  ASSERT_TRUE(index->serialize(&bytes).is_ok());
  auto back = make_vector_index_from(c, bytes);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ((*back)->trained_size(), 800);
  // Factor 0: never retrains.
  c.ivf_retrain_factor = 0;
  auto fixed = make(c);
  ASSERT_TRUE(fixed->add(200, labels.data(), x.data()).is_ok());
  ASSERT_TRUE(fixed->optimize().is_ok());
  ASSERT_TRUE(fixed->add(600, labels.data() + 200, x.data() + 200 * d).is_ok());
  EXPECT_FALSE(fixed->wants_optimize());
}

// memory_bytes(): what each type holds per vector, within bounds computed from its layout.
TEST(Memory, BytesPerVectorFollowTheLayout) {
  const int d = 64, n = 2000;
  auto x = random_vectors(n, d, 41);
  auto labels = make_labels(n);
  auto per_vector = [&](VectorIndex& index) {
    return static_cast<double>(index.memory_bytes()) / static_cast<double>(index.stored());
  };
  auto flat = make(config("flat", d));
  ASSERT_TRUE(flat->add(n, labels.data(), x.data()).is_ok());
  EXPECT_GE(per_vector(*flat), d * 4.0 + 12);  // the vector, its label and norm
  EXPECT_LE(per_vector(*flat), d * 4.0 + 12 + 64);
  VectorIndexConfig hc = config("hnsw", d);
  hc.hnsw_m = 16;
  hc.hnsw_ef_construction = 40;
  auto hnsw = make(hc);
  ASSERT_TRUE(hnsw->add(n, labels.data(), x.data()).is_ok());
  const double pending = per_vector(*hnsw);  // all pending: a flat buffer
  EXPECT_NEAR(pending, per_vector(*flat), 1.0);
  ASSERT_TRUE(hnsw->absorb_pending(n).is_ok());
  // Level 0 holds 2*M links of 4 bytes for every vector; upper levels add a little.
  EXPECT_GE(per_vector(*hnsw), d * 4.0 + 2 * 16 * 4);
  EXPECT_LE(per_vector(*hnsw), d * 4.0 + 2 * 16 * 4 * 1.5 + 128);
  VectorIndexConfig ic = config("ivf", d);
  ic.ivf_nlist = 16;
  ic.ivf_train_min = 1000;
  auto ivf = make(ic);
  ASSERT_TRUE(ivf->add(n, labels.data(), x.data()).is_ok());
  ASSERT_TRUE(ivf->optimize().is_ok());
  ASSERT_EQ(ivf->type(), "ivf");
  // The vector and its id in a list, centroids shared, two hash entries.
  EXPECT_GE(per_vector(*ivf), d * 4.0 + 8);
  EXPECT_LE(per_vector(*ivf), d * 4.0 + 8 + 16.0 * d * 4 / n + 2 * 64);
}

TEST(Ivf, DefaultThresholdAndNlist) {
  VectorIndexConfig c = config("ivf", 8);
  IvfIndex a(c);
  EXPECT_EQ(a.train_threshold(), 24336);  // n = 39 * 4 * sqrt(n)
  c.ivf_nlist = 10;
  IvfIndex b(c);
  EXPECT_EQ(b.train_threshold(), 390);
}

TEST(Factory, RejectsBadConfigs) {
  EXPECT_EQ(make_vector_index(config("annoy", 4)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(make_vector_index(config("flat", 0)).status().code(), StatusCode::kInvalidArgument);
  VectorIndexConfig c = config("hnsw", 4);
  c.hnsw_m = 1;
  EXPECT_FALSE(make_vector_index(c).is_ok());
  auto flat = make(config("flat", 4));
  float v[4] = {1, 2, 3, 4};
  int64_t bad = -1;
  EXPECT_EQ(flat->add(1, &bad, v).code(), StatusCode::kInvalidArgument);
  int64_t l;
  float dist;
  EXPECT_FALSE(flat->search(1, v, 0, {}, nullptr, &l, &dist).is_ok());
}

class Serialization : public ::testing::TestWithParam<std::string> {};

TEST_P(Serialization, RoundTripKeepsResultsAndRejectsDamage) {
  const int d = 16, n = 1200, k = 10;
  auto x = random_vectors(n, d, 7);
  auto labels = make_labels(n, 5);
  VectorIndexConfig c = config(GetParam(), d, IndexMetric::kL2);
  c.ivf_train_min = 600;
  auto index = make(c);
  ASSERT_TRUE(index->add(n, labels.data(), x.data()).is_ok());
  ASSERT_TRUE(index->optimize().is_ok());  // trains the IVF index
  std::vector<int64_t> removed(labels.begin(), labels.begin() + 100);  // tombstones for HNSW
  ASSERT_TRUE(index->remove(removed.size(), removed.data()).is_ok());
  std::string bytes;
  ASSERT_TRUE(index->serialize(&bytes).is_ok());
  auto back = make_vector_index_from(c, bytes);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ((*back)->size(), index->size());
  EXPECT_EQ((*back)->stored(), index->stored());
  EXPECT_EQ((*back)->type(), index->type());
  auto q = random_vectors(10, d, 8);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(search_labels(**back, &q[i * d], k), search_labels(*index, &q[i * d], k));
  }
  // The restored index keeps working: removal and addition.
  ASSERT_TRUE((*back)->remove(1, &labels[200]).is_ok());
  EXPECT_FALSE((*back)->contains(labels[200]));
  ASSERT_TRUE((*back)->add(1, &labels[200], &q[0]).is_ok());
  EXPECT_EQ(search_labels(**back, &q[0], 1)[0], labels[200]);
  // Truncated bytes and a wrong type are corruption, not crashes.
  for (size_t cut : {size_t{0}, size_t{1}, size_t{9}, bytes.size() / 3, bytes.size() - 1}) {
    auto bad = make_vector_index_from(c, std::string_view(bytes).substr(0, cut));
    EXPECT_EQ(bad.status().code(), StatusCode::kCorruption) << "cut " << cut;
  }
  VectorIndexConfig other = c;
  other.type = GetParam() == "flat" ? "hnsw" : "flat";
  EXPECT_EQ(make_vector_index_from(other, bytes).status().code(), StatusCode::kCorruption);
}

INSTANTIATE_TEST_SUITE_P(Types, Serialization, ::testing::Values("flat", "hnsw", "ivf"));

TEST(IndexFile, AtomicWriteReadAndDamageDetection) {
  std::string dir = (std::filesystem::temp_directory_path() / "qsearch-ixf-XXXXXX").string();
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  const std::string path = dir + "/7.faiss";
  IndexFileHeader h;
  std::string payload;
  EXPECT_EQ(read_index_file(path, &h, &payload).code(), StatusCode::kNotFound);
  std::string data(100001, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 31 + 7);
  ASSERT_TRUE(write_index_file(path, {7, 12345}, data).is_ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  ASSERT_TRUE(read_index_file(path, &h, &payload).is_ok());
  EXPECT_EQ(h.collection_id, 7u);
  EXPECT_EQ(h.sequence, 12345u);
  EXPECT_EQ(payload, data);
  {  // flip one payload byte
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40 + 5000);
    f.put('\x5a' ^ data[5000]);
  }
  EXPECT_EQ(read_index_file(path, &h, &payload).code(), StatusCode::kCorruption);
  std::filesystem::resize_file(path, 30);
  EXPECT_EQ(read_index_file(path, &h, &payload).code(), StatusCode::kCorruption);
  EXPECT_NE(index_checksum("abc"), index_checksum("abd"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qsearch
