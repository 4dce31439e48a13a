// The "gpu" index against CPU flat: same ids and scores (to 1e-3) on random data, with and
// without filters, after removes (and the compaction they trigger), under concurrent searches
// (the batching queue). Tests that need a GPU skip visibly without one; the fallback to CPU flat
// search runs everywhere.
#include "index/gpu_index.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
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
      EXPECT_NEAR(gpu.dist[at], cpu.dist[at], tolerance(cpu.dist[at]))
          << what << " query " << q << " rank " << i;
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
  c.gpu_devices = {1000};  // absent everywhere
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
  c = gpu_config();
  c.gpu_precision = "fp8";
  EXPECT_FALSE(make_vector_index(c).is_ok());
  c = gpu_config();
  c.gpu_rescore = 0;
  EXPECT_FALSE(make_vector_index(c).is_ok());
  c = gpu_config();
  c.gpu_devices = {0, -1};
  EXPECT_FALSE(make_vector_index(c).is_ok());
  c = gpu_config();
  c.gpu_precision = "int8";
  c.gpu_devices = {0, 0, 0};
  EXPECT_TRUE(make_vector_index(c).is_ok());
}

// A device list with one absent ordinal: the whole index falls back, naming the shard, and
// answers as flat (int8 too: the fallback holds the fp32 vectors). The host side is reported
// (flat's memory), the device side is empty.
TEST(GpuIndexFallback, ShardListWithAnAbsentDeviceFallsBackWhole) {
  VectorIndexConfig c = gpu_config();
  c.gpu_devices = {0, 1000};
  c.gpu_precision = "int8";
  GpuIndex index(c);
  EXPECT_EQ(index.type(), "flat");
  EXPECT_EQ(index.fallback_reason().rfind("shard ", 0), 0u) << index.fallback_reason();
  EXPECT_EQ(index.shards(), 0);
  EXPECT_TRUE(index.device_shards().empty());
  EXPECT_EQ(index.device_bytes(), 0);
  const int n = 2000, nq = 4, k = 10;
  auto x = unit_vectors(n, kDim, 21);
  std::vector<int64_t> labels(n);
  for (int i = 0; i < n; ++i) labels[i] = i;
  ASSERT_TRUE(index.add(n, labels.data(), x.data()).is_ok());
  EXPECT_GE(index.memory_bytes(), int64_t{n} * kDim * 4);
  FlatIndex flat(kDim, IndexMetric::kInnerProduct);
  ASSERT_TRUE(flat.add(n, labels.data(), x.data()).is_ok());
  auto q = unit_vectors(nq, kDim, 22);
  Result a = run(index, q, nq, k), b = run(flat, q, nq, k);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.dist, b.dist);
}

// Shard assignment (host code): fresh rows go to the least filled shards, balancing them, ties
// to the lower index; the counts always add up.
TEST(GpuIndexShards, FreshRowsFillTheEmptiestShardsFirst) {
  using index_internal::split_fresh_rows;
  EXPECT_EQ(split_fresh_rows({0}, 7), (std::vector<int64_t>{7}));
  EXPECT_EQ(split_fresh_rows({0, 0}, 7), (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(split_fresh_rows({0, 0, 0, 0}, 2), (std::vector<int64_t>{1, 1, 0, 0}));
  EXPECT_EQ(split_fresh_rows({10, 4}, 3), (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(split_fresh_rows({10, 4}, 10), (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(split_fresh_rows({5, 1, 3}, 6), (std::vector<int64_t>{0, 4, 2}));
  EXPECT_EQ(split_fresh_rows({5, 1, 3}, 0), (std::vector<int64_t>{0, 0, 0}));
  std::mt19937 rng(3);
  for (int t = 0; t < 200; ++t) {
    std::vector<int64_t> stored(1 + rng() % 5);
    for (auto& v : stored) v = rng() % 1000;
    const int64_t n = rng() % 3000;
    auto give = split_fresh_rows(stored, n);
    ASSERT_EQ(give.size(), stored.size());
    int64_t sum = 0, lowest = INT64_MAX;
    for (size_t i = 0; i < stored.size(); ++i) {
      ASSERT_GE(give[i], 0);
      sum += give[i];
      lowest = std::min(lowest, stored[i] + give[i]);
    }
    ASSERT_EQ(sum, n);
    // Water-filling: a shard that got rows ends at most one above the least filled one.
    for (size_t i = 0; i < stored.size(); ++i) {
      if (give[i] > 0) {
        EXPECT_LE(stored[i] + give[i], lowest + 1) << "trial " << t << " shard " << i;
      }
    }
  }
}

// int8 rows as the device stores them (host code): scale absmax / 127, values in [-127, 127],
// each within half a step of the input; an all-zero row gets scale 1 and zeros.
TEST(GpuIndexInt8Host, QuantizationIsSymmetricPerRow) {
  auto x = unit_vectors(50, kDim, 71);
  std::vector<int8_t> q(kDim);
  for (int i = 0; i < 50; ++i) {
    const float* row = x.data() + i * kDim;
    float amax = 0.f;
    for (int j = 0; j < kDim; ++j) amax = std::max(amax, std::fabs(row[j]));
    const float scale = index_internal::quantize_int8(row, kDim, q.data());
    ASSERT_FLOAT_EQ(scale, amax / 127.f);
    bool hit_max = false;
    for (int j = 0; j < kDim; ++j) {
      ASSERT_LE(std::abs(static_cast<int>(q[j])), 127);
      hit_max = hit_max || std::abs(static_cast<int>(q[j])) == 127;
      ASSERT_LE(std::fabs(q[j] * scale - row[j]), 0.5f * scale * 1.0001f) << "row " << i;
    }
    EXPECT_TRUE(hit_max);  // the largest component maps to +-127
  }
  std::vector<float> zero(kDim, 0.f);
  EXPECT_EQ(index_internal::quantize_int8(zero.data(), kDim, q.data()), 1.f);
  EXPECT_TRUE(std::all_of(q.begin(), q.end(), [](int8_t v) { return v == 0; }));
}

// The int8 index's host fp32 copy: rows across block boundaries read back as written, truncate
// keeps the first rows (and frees whole blocks), appends continue after it.
TEST(GpuIndexInt8Host, HostRowsInBlocks) {
  const int d = 3;
  HostRows rows(d);
  const int64_t n = HostRows::kBlockRows * 2 + 5;
  std::vector<float> x(static_cast<size_t>(n) * d);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  rows.append(7, x.data());
  rows.append(n - 7, x.data() + 7 * d);
  ASSERT_EQ(rows.rows(), n);
  EXPECT_EQ(rows.bytes(), 3 * HostRows::kBlockRows * d * 4);
  for (int64_t r :
       {int64_t{0}, int64_t{6}, int64_t{7}, HostRows::kBlockRows - 1, HostRows::kBlockRows, n - 1})
    for (int j = 0; j < d; ++j) ASSERT_EQ(rows.row(r)[j], x[r * d + j]) << "row " << r;
  rows.truncate(HostRows::kBlockRows + 1);
  EXPECT_EQ(rows.rows(), HostRows::kBlockRows + 1);
  EXPECT_EQ(rows.bytes(), 2 * HostRows::kBlockRows * d * 4);
  const float extra[d] = {-1.f, -2.f, -3.f};
  rows.append(1, extra);
  EXPECT_EQ(rows.row(HostRows::kBlockRows + 1)[2], -3.f);
  EXPECT_EQ(rows.row(HostRows::kBlockRows)[0], x[HostRows::kBlockRows * d]);
  rows.truncate(0);
  EXPECT_EQ(rows.bytes(), 0);
  rows.append(1, extra);
  EXPECT_EQ(rows.row(0)[1], -2.f);
}

// The host merge of per-shard best lists: best keys first across shards, padding (row -1)
// skipped, ties to the lower shard, at most `take`.
TEST(GpuIndexShards, MergeOfShardListsKeepsTheBest) {
  const float k0[] = {0.9f, 0.5f, 0.1f}, k1[] = {0.7f, 0.5f, -1e30f};
  const int32_t r0[] = {4, 2, 8}, r1[] = {3, 9, -1};
  auto m = index_internal::merge_shard_lists({k0, k1}, {r0, r1}, 3, 4);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].shard, 0);
  EXPECT_EQ(m[0].row, 4);
  EXPECT_EQ(m[1].shard, 1);
  EXPECT_EQ(m[1].row, 3);
  EXPECT_EQ(m[2].shard, 0);  // tie at 0.5: shard 0 first
  EXPECT_EQ(m[2].row, 2);
  EXPECT_EQ(m[3].shard, 1);
  EXPECT_EQ(m[3].row, 9);
  auto all = index_internal::merge_shard_lists({k0, k1}, {r0, r1}, 3, 10);
  EXPECT_EQ(all.size(), 5u);  // the padding entry is not a candidate
  EXPECT_FLOAT_EQ(all.back().key, 0.1f);
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

// ---- shards (several on GPU 0) and int8 rows with exact rescoring ----

VectorIndexConfig sharded_config(int shards, const std::string& precision = "bf16",
                                 IndexMetric metric = IndexMetric::kInnerProduct) {
  VectorIndexConfig c = gpu_config(metric);
  c.gpu_devices.assign(shards, 0);
  c.gpu_precision = precision;
  return c;
}

// Shard rows add up to stored() and stay balanced (within `slack` of an even split).
void expect_balanced(const GpuIndex& index, int shards, int64_t slack) {
  auto info = index.device_shards();
  ASSERT_EQ(static_cast<int>(info.size()), shards);
  int64_t rows = 0, live = 0;
  for (const auto& d : info) {
    EXPECT_EQ(d.device, 0);
    EXPECT_GT(d.bytes, 0);
    rows += d.rows;
    live += d.live;
  }
  EXPECT_EQ(rows, index.stored());
  EXPECT_EQ(live, index.size());
  for (const auto& d : info) EXPECT_LE(std::llabs(d.rows - rows / shards), slack);
}

// 2, 3 and 4 shards on GPU 0 answer as one shard and as CPU flat: unfiltered (k up to the host
// path), filtered (predicate and label set), after scattered removes (tombstones), after
// removes that compact every shard, and after replacements and new rows.
TEST(GpuIndexShards, ShardsOnOneGpuMergeLikeOneShardAndFlat) {
  SKIP_WITHOUT_GPU();
  const int n = 16000, nq = 24;
  auto x = unit_vectors(n, kDim, 31);
  auto q = unit_vectors(nq, kDim, 32);
  std::vector<int64_t> labels(n);
  for (int i = 0; i < n; ++i) labels[i] = 11 + 2 * i;
  for (int shards : {2, 3, 4}) {
    SCOPED_TRACE("shards " + std::to_string(shards));
    GpuIndex many(sharded_config(shards));
    GpuIndex one(gpu_config());
    FlatIndex flat(kDim, IndexMetric::kInnerProduct);
    ASSERT_EQ(many.type(), "gpu") << many.fallback_reason();
    EXPECT_EQ(many.shards(), shards);
    // Two adds: the second lands on shards that already hold rows.
    for (VectorIndex* index : std::initializer_list<VectorIndex*>{&many, &one, &flat}) {
      ASSERT_TRUE(index->add(5000, labels.data(), x.data()).is_ok());
      ASSERT_TRUE(index->add(n - 5000, labels.data() + 5000, x.data() + 5000 * kDim).is_ok());
    }
    expect_balanced(many, shards, 1);
    for (int k : {1, 10, 100, 4096, 5000}) {
      expect_same(run(many, q, nq, k), run(flat, q, nq, k), nq, k, "sharded vs flat");
      expect_same(run(many, q, nq, k), run(one, q, nq, k), nq, k, "sharded vs one shard");
    }
    PredicateFilter odd([](int64_t l) { return (l / 2) % 3 == 1; });
    expect_same(run(many, q, nq, 10, &odd), run(flat, q, nq, 10, &odd), nq, 10, "predicate");
    std::vector<int64_t> picked;
    for (int i = 0; i < n; i += 29) picked.push_back(labels[i]);
    LabelSetFilter set(picked);
    expect_same(run(many, q, nq, 10, &set), run(flat, q, nq, 10, &set), nq, 10, "label set");
    LabelSetFilter few({labels[0], labels[n - 1]});
    Result r = run(many, q, 1, 4, &few);
    EXPECT_EQ(std::count(r.labels.begin(), r.labels.end(), -1), 2);
    // Scattered removes: tombstones only.
    std::vector<int64_t> gone;
    for (int i = 0; i < n; i += 50) gone.push_back(labels[i]);
    for (VectorIndex* index : std::initializer_list<VectorIndex*>{&many, &one, &flat})
      ASSERT_TRUE(index->remove(gone.size(), gone.data()).is_ok());
    EXPECT_EQ(many.stored(), n);
    expect_same(run(many, q, nq, 20), run(flat, q, nq, 20), nq, 20, "tombstones");
    // 40% more: every shard passes a quarter of tombstones and 1024 rows and compacts.
    gone.clear();
    for (int i = 1; i < n; ++i)
      if (i % 5 < 2) gone.push_back(labels[i]);
    for (VectorIndex* index : std::initializer_list<VectorIndex*>{&many, &one, &flat})
      ASSERT_TRUE(index->remove(gone.size(), gone.data()).is_ok());
    EXPECT_EQ(many.stored(), many.size());
    EXPECT_EQ(many.size(), flat.size());
    expect_balanced(many, shards, n / 50 / shards + 2);
    expect_same(run(many, q, nq, 20), run(flat, q, nq, 20), nq, 20, "compacted");
    expect_same(run(many, q, nq, 20), run(one, q, nq, 20), nq, 20, "compacted vs one shard");
    expect_same(run(many, q, nq, 10, &set), run(flat, q, nq, 10, &set), nq, 10, "compacted set");
    // Replace two (one becomes query 0's exact answer) and add new rows.
    std::vector<int64_t> again = {labels[3], labels[8], 1 << 30, (1 << 30) + 1};
    std::vector<float> rows(4 * kDim);
    std::copy(q.begin(), q.begin() + kDim, rows.begin());
    auto extra = unit_vectors(3, kDim, 33);
    std::copy(extra.begin(), extra.end(), rows.begin() + kDim);
    for (VectorIndex* index : std::initializer_list<VectorIndex*>{&many, &one, &flat})
      ASSERT_TRUE(index->add(4, again.data(), rows.data()).is_ok());
    Result g = run(many, q, nq, 10);
    EXPECT_EQ(g.labels[0], labels[3]);
    expect_same(g, run(flat, q, nq, 10), nq, 10, "replaced");
    std::vector<int64_t> live_labels;
    std::vector<float> live_rows;
    ASSERT_TRUE(many.export_live(&live_labels, &live_rows).is_ok());
    EXPECT_EQ(static_cast<int64_t>(live_labels.size()), flat.size());
    EXPECT_EQ(std::set<int64_t>(live_labels.begin(), live_labels.end()).size(), live_labels.size());
  }
}

// Concurrent single-query searches over 3 shards: batched, merged, exact.
TEST(GpuIndexShards, ConcurrentSearchesOverShards) {
  SKIP_WITHOUT_GPU();
  GpuIndex gpu(sharded_config(3));
  FlatIndex flat(kDim, IndexMetric::kInnerProduct);
  const int n = 9000, nq = 64, k = 10;
  auto x = unit_vectors(n, kDim, 41);
  std::vector<int64_t> labels(n);
  for (int i = 0; i < n; ++i) labels[i] = i;
  ASSERT_TRUE(gpu.add(n, labels.data(), x.data()).is_ok());
  ASSERT_TRUE(flat.add(n, labels.data(), x.data()).is_ok());
  auto q = unit_vectors(nq, kDim, 42);
  Result got{std::vector<int64_t>(nq * k), std::vector<float>(nq * k)};
  std::vector<std::thread> threads;
  for (int t = 0; t < nq; ++t)
    threads.emplace_back([&, t] {
      Status s =
          gpu.search(1, q.data() + t * kDim, k, {}, nullptr, &got.labels[t * k], &got.dist[t * k]);
      EXPECT_TRUE(s.is_ok()) << s.to_string();
    });
  for (auto& t : threads) t.join();
  expect_same(got, run(flat, q, nq, k), nq, k, "concurrent sharded");
}

// int8 rows, exact rescoring: recall@10 of 1.0 against CPU flat on 100k random unit vectors at
// 1024 dims (1 and 2 shards), with the exact fp32 distances; the rows take a quarter of their
// fp32 size on the device and the host keeps the fp32 copy.
TEST(GpuIndexInt8, RecallOneAt100kWithRescoring) {
  SKIP_WITHOUT_GPU();
  const int d = 1024, n = 100000, nq = 100, k = 10;
  auto x = unit_vectors(n, d, 51);
  auto q = unit_vectors(nq, d, 52);
  std::vector<int64_t> labels(n);
  for (int i = 0; i < n; ++i) labels[i] = i;
  FlatIndex flat(d, IndexMetric::kInnerProduct);
  ASSERT_TRUE(flat.add(n, labels.data(), x.data()).is_ok());
  std::vector<int64_t> want(nq * k);
  std::vector<float> want_d(nq * k);
  ASSERT_TRUE(flat.search(nq, q.data(), k, {}, nullptr, want.data(), want_d.data()).is_ok());
  for (int shards : {1, 2}) {
    VectorIndexConfig c = sharded_config(shards, "int8");
    c.dimension = d;
    c.gpu_chunk_rows = 0;
    GpuIndex gpu(c);
    ASSERT_EQ(gpu.type(), "gpu") << gpu.fallback_reason();
    EXPECT_TRUE(gpu.int8());
    ASSERT_TRUE(gpu.add(n, labels.data(), x.data()).is_ok());
    std::vector<int64_t> got(nq * k);
    std::vector<float> got_d(nq * k);
    ASSERT_TRUE(gpu.search(nq, q.data(), k, {}, nullptr, got.data(), got_d.data()).is_ok());
    int hits = 0;
    for (int i = 0; i < nq; ++i) {
      std::set<int64_t> truth(want.begin() + i * k, want.begin() + (i + 1) * k);
      for (int j = 0; j < k; ++j) hits += truth.count(got[i * k + j]);
      for (int j = 0; j < k; ++j)
        EXPECT_NEAR(got_d[i * k + j], want_d[i * k + j], 1e-4) << "query " << i << " rank " << j;
    }
    const double recall = static_cast<double>(hits) / (nq * k);
    std::cout << "[ INFO     ] int8, " << shards << " shard(s): recall@10 " << recall
              << ", device bytes " << gpu.device_bytes() << ", host bytes " << gpu.memory_bytes()
              << "\n";
    EXPECT_EQ(recall, 1.0);
    EXPECT_GE(gpu.memory_bytes(), int64_t{n} * d * 4);
    // Rows: 1 byte a value (+ scale); well under bf16's 2 bytes a value.
    EXPECT_LT(gpu.device_bytes(), int64_t{n} * d * 2);
  }
}

// int8 over 2 shards against flat: filters, removes with compaction (the host fp32 copy moves
// with the rows: exports stay bit-exact), replacements, squared L2, and the vector-source hook
// (no host copy kept: less host memory, same answers).
TEST(GpuIndexInt8, FiltersCompactionL2AndVectorSource) {
  SKIP_WITHOUT_GPU();
  const int n = 12000, nq = 16;
  auto x = unit_vectors(n, kDim, 61);
  for (int i = 0; i < n; ++i)  // unnormalised rows: L2 distances vary in scale
    for (int j = 0; j < kDim; ++j) x[i * kDim + j] *= 0.5f + (i % 7) * 0.25f;
  auto q = unit_vectors(nq, kDim, 62);
  std::vector<int64_t> labels(n);
  for (int i = 0; i < n; ++i) labels[i] = 3 * i;
  for (IndexMetric metric : {IndexMetric::kInnerProduct, IndexMetric::kL2}) {
    for (bool hook : {false, true}) {
      SCOPED_TRACE(std::string(metric == IndexMetric::kL2 ? "l2" : "ip") +
                   (hook ? ", vector source" : ", host copy"));
      VectorIndexConfig c = sharded_config(2, "int8", metric);
      c.gpu_rescore = 48;
      std::atomic<int64_t> fetched{0};
      if (hook)
        c.gpu_vector_source = [&](int64_t m, const int64_t* ls, float* out) {
          for (int64_t i = 0; i < m; ++i)
            std::copy(x.begin() + (ls[i] / 3) * kDim, x.begin() + (ls[i] / 3 + 1) * kDim,
                      out + i * kDim);
          fetched += m;
          return Status::ok();
        };
      GpuIndex gpu(c);
      FlatIndex flat(kDim, metric);
      ASSERT_TRUE(gpu.add(n, labels.data(), x.data()).is_ok());
      ASSERT_TRUE(flat.add(n, labels.data(), x.data()).is_ok());
      if (hook) {
        EXPECT_LT(gpu.memory_bytes(), int64_t{n} * kDim * 4);
      } else {
        EXPECT_GE(gpu.memory_bytes(), int64_t{n} * kDim * 4);
      }
      auto check = [&](const char* what, const LabelFilter* f = nullptr, int k = 10) {
        Result g = run(gpu, q, nq, k, f), w = run(flat, q, nq, k, f);
        if (metric == IndexMetric::kL2)
          for (auto* r : {&g, &w})
            for (auto& v : r->dist) v = -v;
        expect_same(g, w, nq, k, what);
      };
      // k >= rescore: no margin past the k-th, so a row whose int8 score ranks it just outside
      // may be missed: every distance returned is still exact for its label, best first, and
      // nearly all of flat's answers are there.
      auto check_cut = [&](const char* what, int k) {
        SCOPED_TRACE(what);
        Result g = run(gpu, q, nq, k), w = run(flat, q, nq, k);
        int64_t hits = 0;
        for (int i = 0; i < nq; ++i) {
          std::set<int64_t> truth(w.labels.begin() + i * k, w.labels.begin() + (i + 1) * k);
          for (int j = 0; j < k; ++j) {
            const int64_t label = g.labels[i * k + j];
            ASSERT_GE(label, 0);
            hits += truth.count(label);
            const float* row = x.data() + (label / 3) * kDim;
            float want = 0.f;
            for (int t = 0; t < kDim; ++t)
              want += metric == IndexMetric::kL2
                          ? (q[i * kDim + t] - row[t]) * (q[i * kDim + t] - row[t])
                          : q[i * kDim + t] * row[t];
            ASSERT_NEAR(g.dist[i * k + j], want, 1e-4f * std::max(1.f, std::fabs(want)));
            if (j > 0) {
              const float prev = g.dist[i * k + j - 1], cur = g.dist[i * k + j];
              ASSERT_TRUE(metric == IndexMetric::kL2 ? prev <= cur : prev >= cur);
            }
          }
        }
        EXPECT_GE(static_cast<double>(hits) / (nq * k), 0.9);
      };
      check("all");
      check_cut("k above rescore", 100);
      check_cut("host path", 4100);
      PredicateFilter some([](int64_t l) { return (l / 3) % 4 == 1; });
      check("predicate", &some);
      std::vector<int64_t> gone;
      for (int i = 0; i < n; ++i)
        if (i % 3 == 0) gone.push_back(labels[i]);
      ASSERT_TRUE(gpu.remove(gone.size(), gone.data()).is_ok());
      ASSERT_TRUE(flat.remove(gone.size(), gone.data()).is_ok());
      EXPECT_EQ(gpu.stored(), gpu.size());  // compacted
      check("compacted");
      check("compacted, predicate", &some);
      std::vector<int64_t> live_labels;
      std::vector<float> live_rows;
      ASSERT_TRUE(gpu.export_live(&live_labels, &live_rows).is_ok());
      ASSERT_EQ(static_cast<int64_t>(live_labels.size()), flat.size());
      for (size_t i = 0; i < live_labels.size(); i += 97) {
        const float* want = x.data() + (live_labels[i] / 3) * kDim;
        ASSERT_TRUE(std::equal(want, want + kDim, live_rows.begin() + i * kDim))
            << "label " << live_labels[i];
      }
      if (hook) {
        EXPECT_GT(fetched.load(), 0);
      }
    }
  }
}

}  // namespace
}  // namespace qsearch
