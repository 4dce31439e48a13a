// The "gpu" index against CPU flat: same ids and scores (to 1e-3) on random data, with and
// without filters, after removes (and the compaction they trigger), under concurrent searches
// (the batching queue). Tests that need a GPU skip visibly without one; the fallback to CPU flat
// search runs everywhere.
#include "index/gpu_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <thread>

#include "index/flat_index.h"
#include "index/vector_index.h"

namespace qsearch {
namespace {

constexpr int kDim = 128;

std::vector<float> unit_vectors(int64_t n, int d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> x(n * d);
  for (int64_t i = 0; i < n; ++i) {
    float norm = 0;
    for (int j = 0; j < d; ++j) norm += (x[i * d + j] = g(rng)) * x[i * d + j];
    norm = std::sqrt(norm);
    for (int j = 0; j < d; ++j) x[i * d + j] /= norm;
  }
  return x;
}

VectorIndexConfig gpu_config(IndexMetric metric = IndexMetric::kInnerProduct) {
  VectorIndexConfig c;
  c.type = "gpu";
  c.dimension = kDim;
  c.metric = metric;
  c.gpu_chunk_rows = 4096;  // several chunks, the last one partial
  return c;
}

struct Result {
  std::vector<int64_t> labels;
  std::vector<float> dist;
};

Result run(const VectorIndex& index, const std::vector<float>& q, int nq, int k,
           const LabelFilter* filter = nullptr) {
  Result r{std::vector<int64_t>(static_cast<size_t>(nq) * k),
           std::vector<float>(static_cast<size_t>(nq) * k)};
  Status s = index.search(nq, q.data(), k, {}, filter, r.labels.data(), r.dist.data());
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return r;
}

// Same answers up to bf16 rounding: each position's score within 1e-3 (relative to the score
// where it is above 1: squared L2 distances of unnormalised vectors grow with their norms, and
// the rows are held in bf16); the label sets equal except for labels whose score is that close
// to the k-th (a near-tie at the cut may swap).
float tolerance(float score) { return 1e-3f * std::max(1.0f, std::fabs(score)); }

void expect_same(const Result& gpu, const Result& cpu, int nq, int k, const char* what) {
  int swapped = 0;
  for (int q = 0; q < nq; ++q) {
    std::set<int64_t> g, c;
    float kth = -1e30f;
    for (int i = 0; i < k; ++i) {
      const size_t at = static_cast<size_t>(q) * k + i;
      ASSERT_EQ(gpu.labels[at] < 0, cpu.labels[at] < 0) << what << " query " << q << " rank " << i;
      if (cpu.labels[at] < 0) continue;
      EXPECT_NEAR(gpu.dist[at], cpu.dist[at], tolerance(cpu.dist[at])) << what << " query " << q << " rank " << i;
      g.insert(gpu.labels[at]);
      c.insert(cpu.labels[at]);
      kth = cpu.dist[at];
    }
    for (int i = 0; i < k; ++i) {
      const size_t at = static_cast<size_t>(q) * k + i;
      if (cpu.labels[at] < 0 || g.count(cpu.labels[at])) continue;
      ++swapped;
      EXPECT_LT(std::fabs(cpu.dist[at] - kth), tolerance(kth))
          << what << " query " << q << ": label " << cpu.labels[at] << " missing";
    }
  }
  // Near-ties at the cut: a few per query when k is a good share of the rows.
  EXPECT_LE(swapped, nq * std::max(1, k / 20)) << what;
}

bool have_gpu(std::string* why) {
  GpuIndex probe(gpu_config());
  *why = probe.fallback_reason();
  return probe.type() == "gpu";
}

#define SKIP_WITHOUT_GPU()                                  \
  do {                                                      \
    std::string why;                                        \
    if (!have_gpu(&why)) GTEST_SKIP() << "no GPU: " << why; \
  } while (0)

TEST(GpuIndexFallback, NoDeviceSearchesAsFlatAndSaysWhy) {
  VectorIndexConfig c = gpu_config();
  c.gpu_device = 1000;  // absent everywhere
  auto made = make_vector_index(c);
  ASSERT_TRUE(made.is_ok()) << made.status().to_string();
  VectorIndex& index = **made;
  EXPECT_EQ(index.type(), "flat");
  EXPECT_FALSE(index.fallback_reason().empty());
  FlatIndex flat(kDim, IndexMetric::kInnerProduct);
  const int n = 3000, nq = 8, k = 10;
  auto x = unit_vectors(n, kDim, 1);
  std::vector<int64_t> labels(n);
  for (int i = 0; i < n; ++i) labels[i] = 7 * i;
  ASSERT_TRUE(index.add(n, labels.data(), x.data()).is_ok());
  ASSERT_TRUE(flat.add(n, labels.data(), x.data()).is_ok());
  std::vector<int64_t> gone(labels.begin(), labels.begin() + 500);
  ASSERT_TRUE(index.remove(500, gone.data()).is_ok());
  ASSERT_TRUE(flat.remove(500, gone.data()).is_ok());
  auto q = unit_vectors(nq, kDim, 2);
  Result a = run(index, q, nq, k), b = run(flat, q, nq, k);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.dist, b.dist);
  EXPECT_EQ(index.size(), n - 500);
}

TEST(GpuIndexFallback, ConfigIsValidated) {
  VectorIndexConfig c = gpu_config();
  c.gpu_max_batch = 0;
  EXPECT_FALSE(make_vector_index(c).is_ok());
}

class GpuIndexVsFlat : public ::testing::Test {
 protected:
  void fill(VectorIndex* gpu, FlatIndex* flat, int n, uint32_t seed) {
    x_ = unit_vectors(n, kDim, seed);
    labels_.resize(n);
    for (int i = 0; i < n; ++i) labels_[i] = 5 + 3 * i;
    ASSERT_TRUE(gpu->add(n, labels_.data(), x_.data()).is_ok());
    ASSERT_TRUE(flat->add(n, labels_.data(), x_.data()).is_ok());
  }
  std::vector<float> x_;
  std::vector<int64_t> labels_;
};

TEST_F(GpuIndexVsFlat, RandomDataWithAndWithoutFilters) {
  SKIP_WITHOUT_GPU();
  GpuIndex gpu(gpu_config());
  FlatIndex flat(kDim, IndexMetric::kInnerProduct);
  fill(&gpu, &flat, 20000, 3);
  EXPECT_EQ(gpu.type(), "gpu");
  EXPECT_EQ(gpu.size(), 20000);
  const int nq = 40;
  auto q = unit_vectors(nq, kDim, 4);
  for (int k : {1, 10, 100, 1000, 5000}) {  // 5000: past the device selection (host path)
    expect_same(run(gpu, q, nq, k), run(flat, q, nq, k), nq, k, "unfiltered");
  }
  PredicateFilter third([](int64_t l) { return l % 3 == 2 && (l / 3) % 3 == 0; });
  expect_same(run(gpu, q, nq, 10, &third), run(flat, q, nq, 10, &third), nq, 10, "predicate");
  std::vector<int64_t> picked;
  for (size_t i = 0; i < labels_.size(); i += 37) picked.push_back(labels_[i]);
  LabelSetFilter set(picked);
  expect_same(run(gpu, q, nq, 10, &set), run(flat, q, nq, 10, &set), nq, 10, "label set");
  // Fewer matches than k: padded with -1 like flat.
  LabelSetFilter few({labels_[1], labels_[2], labels_.back() + 1});
  Result r = run(gpu, q, 1, 5, &few);
  EXPECT_EQ(std::count(r.labels.begin(), r.labels.end(), -1), 3);
}

TEST_F(GpuIndexVsFlat, AfterRemovesCompactionAndReplacement) {
  SKIP_WITHOUT_GPU();
  GpuIndex gpu(gpu_config());
  FlatIndex flat(kDim, IndexMetric::kInnerProduct);
  fill(&gpu, &flat, 9000, 5);
  const int nq = 16, k = 20;
  auto q = unit_vectors(nq, kDim, 6);
  // 200 scattered removes: tombstones only.
  std::vector<int64_t> gone;
  for (int i = 0; i < 9000; i += 45) gone.push_back(labels_[i]);
  ASSERT_TRUE(gpu.remove(gone.size(), gone.data()).is_ok());
  ASSERT_TRUE(flat.remove(gone.size(), gone.data()).is_ok());
  EXPECT_EQ(gpu.stored(), 9000);
  expect_same(run(gpu, q, nq, k), run(flat, q, nq, k), nq, k, "tombstones");
  // Remove a third more: compaction (stored rows drop to the live ones).
  gone.clear();
  for (int i = 1; i < 9000; i += 3) gone.push_back(labels_[i]);
  ASSERT_TRUE(gpu.remove(gone.size(), gone.data()).is_ok());
  ASSERT_TRUE(flat.remove(gone.size(), gone.data()).is_ok());
  EXPECT_EQ(gpu.stored(), gpu.size());
  EXPECT_EQ(gpu.size(), flat.size());
  expect_same(run(gpu, q, nq, k), run(flat, q, nq, k), nq, k, "compacted");
  // Replace some (one of them to be the exact answer of query 0) and add new ones.
  std::vector<int64_t> again = {labels_[3], labels_[6], 1 << 30};
  std::vector<float> rows(3 * kDim);
  std::copy(q.begin(), q.begin() + kDim, rows.begin());
  auto extra = unit_vectors(2, kDim, 7);
  std::copy(extra.begin(), extra.end(), rows.begin() + kDim);
  ASSERT_TRUE(gpu.add(3, again.data(), rows.data()).is_ok());
  ASSERT_TRUE(flat.add(3, again.data(), rows.data()).is_ok());
  Result g = run(gpu, q, nq, k);
  EXPECT_EQ(g.labels[0], labels_[3]);
  EXPECT_NEAR(g.dist[0], 1.0f, 2e-3);
  expect_same(g, run(flat, q, nq, k), nq, k, "replaced");
  std::vector<int64_t> live_labels;
  std::vector<float> live_rows;
  ASSERT_TRUE(gpu.export_live(&live_labels, &live_rows).is_ok());
  EXPECT_EQ(static_cast<int64_t>(live_labels.size()), flat.size());
}

TEST_F(GpuIndexVsFlat, ConcurrentSearchesAreBatchedAndExact) {
  SKIP_WITHOUT_GPU();
  GpuIndex gpu(gpu_config());
  FlatIndex flat(kDim, IndexMetric::kInnerProduct);
  fill(&gpu, &flat, 10000, 8);
  const int nq = 96, k = 10;
  auto q = unit_vectors(nq, kDim, 9);
  Result cpu = run(flat, q, nq, k);
  Result got{std::vector<int64_t>(nq * k), std::vector<float>(nq * k)};
  std::vector<std::thread> threads;
  for (int t = 0; t < nq; ++t) {
    threads.emplace_back([&, t] {
      std::vector<float> one(q.begin() + t * kDim, q.begin() + (t + 1) * kDim);
      Status s = gpu.search(1, one.data(), k, {}, nullptr, &got.labels[t * k], &got.dist[t * k]);
      EXPECT_TRUE(s.is_ok()) << s.to_string();
    });
  }
  for (auto& t : threads) t.join();
  expect_same(got, cpu, nq, k, "concurrent");
}

TEST_F(GpuIndexVsFlat, SquaredL2) {
  SKIP_WITHOUT_GPU();
  GpuIndex gpu(gpu_config(IndexMetric::kL2));
  FlatIndex flat(kDim, IndexMetric::kL2);
  fill(&gpu, &flat, 5000, 10);
  const int nq = 8, k = 10;
  auto q = unit_vectors(nq, kDim, 11);
  Result g = run(gpu, q, nq, k), c = run(flat, q, nq, k);
  // L2 ranks ascending: compare with negated distances so expect_same's "k-th" logic holds.
  for (auto* r : {&g, &c})
    for (auto& d : r->dist) d = -d;
  expect_same(g, c, nq, k, "l2");
}

}  // namespace
}  // namespace qsearch
