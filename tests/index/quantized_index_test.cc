// Quantized index storage (issue 14) at the index level: sq8 HNSW stays exact until it can
// train its ranges, then holds 1-byte codes; IVF-PQ holds pq_m-byte codes; both decode rows for
// export, survive serialisation, and refuse bytes of another quantizer (so recovery rebuilds).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "index/vector_index.h"

namespace qsearch {
namespace {

std::vector<float> random_vectors(int64_t n, int d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> x(static_cast<size_t>(n) * d);
  for (auto& v : x) v = g(rng);
  return x;
}

std::vector<int64_t> iota_labels(int64_t n, int64_t first = 0) {
  std::vector<int64_t> l(n);
  for (int64_t i = 0; i < n; ++i) l[i] = first + i;
  return l;
}

// Top-5 labels of a few queries (rows of x used as queries).
std::vector<int64_t> top5(const VectorIndex& index, const std::vector<float>& x, int d) {
  const int64_t nq = 8;
  std::vector<int64_t> labels(nq * 5);
  std::vector<float> dist(nq * 5);
  EXPECT_TRUE(index.search(nq, x.data(), 5, {}, nullptr, labels.data(), dist.data()).is_ok());
  (void)d;
  return labels;
}

TEST(QuantizedIndexStorage, Sq8HnswIsExactUntilItTrainsThenHoldsOneBytePerComponent) {
  const int d = 16;
  VectorIndexConfig c;
  c.type = "hnsw";
  c.dimension = d;
  c.metric = IndexMetric::kL2;
  c.hnsw_m = 16;
  c.hnsw_ef_construction = 40;
  c.quantizer = "sq8";
  auto made = make_vector_index(c);
  ASSERT_TRUE(made.is_ok()) << made.status().to_string();
  auto& index = *made;
  const int64_t n = kSqTrainMin + 500;
  const auto x = random_vectors(n, d, 7);
  const auto labels = iota_labels(n);
  ASSERT_TRUE(index->add(kSqTrainMin - 1, labels.data(), x.data()).is_ok());
  // Below the training size: nothing for the inserter, searched exactly.
  EXPECT_EQ(index->pending(), 0);
  EXPECT_EQ(index->type(), "flat");
  EXPECT_FALSE(index->lossy());
  ASSERT_TRUE(index->absorb_pending(1000).is_ok());
  EXPECT_EQ(index->type(), "flat");
  EXPECT_EQ(top5(*index, x, d)[0], 0);
  ASSERT_TRUE(index->add(n - (kSqTrainMin - 1), labels.data() + kSqTrainMin - 1,
                         x.data() + (kSqTrainMin - 1) * d).is_ok());
  EXPECT_EQ(index->pending(), n);
  ASSERT_TRUE(index->absorb_pending(n).is_ok());
  EXPECT_EQ(index->pending(), 0);
  EXPECT_EQ(index->type(), "hnsw");
  EXPECT_TRUE(index->lossy());
  EXPECT_EQ(index->size(), n);
  // Codes: d bytes a vector, plus the graph (level 0: 2*M neighbours of 4 bytes) and maps.
  const int64_t bpv = index->memory_bytes() / n;
  EXPECT_GE(bpv, d);
  EXPECT_LT(bpv, 4 * d + 2 * 16 * 4 + 60) << "more than fp32 vectors would take";
  // Stored rows find themselves first (1-byte codes keep a row nearest to itself here; the
  // graph may miss one).
  auto self_first = [&](const std::vector<int64_t>& top) {
    int found = 0;
    for (int q = 0; q < 8; ++q) found += top[q * 5] == q;
    return found;
  };
  const auto before = top5(*index, x, d);
  EXPECT_GE(self_first(before), 7);
  // Decoded rows are close to the originals (1/255 of each component's range).
  std::vector<int64_t> out_labels;
  std::vector<float> rows;
  ASSERT_TRUE(index->export_live(&out_labels, &rows).is_ok());
  ASSERT_EQ(static_cast<int64_t>(out_labels.size()), n);
  double err = 0;
  for (size_t i = 0; i < out_labels.size(); ++i)
    for (int j = 0; j < d; ++j) err = std::max<double>(err, std::abs(rows[i * d + j] - x[out_labels[i] * d + j]));
  EXPECT_GT(err, 0);    // lossy
  EXPECT_LT(err, 0.05);  // ranges about 8 (N(0,1) over 10k samples): step 0.03
  // Round trip; bytes of another storage are refused (the store then rebuilds).
  std::string bytes;
  ASSERT_TRUE(index->serialize(&bytes).is_ok());
  auto back = make_vector_index_from(c, bytes);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(top5(**back, x, d), before);
  EXPECT_EQ((*back)->memory_bytes(), index->memory_bytes());
  VectorIndexConfig other = c;
  other.quantizer = "fp16";
  EXPECT_EQ(make_vector_index_from(other, bytes).status().code(), StatusCode::kCorruption);
  other.quantizer = "none";
  EXPECT_EQ(make_vector_index_from(other, bytes).status().code(), StatusCode::kCorruption);
  // A tombstone rebuild keeps the trained ranges: the same rows, the same codes.
  std::vector<int64_t> gone = iota_labels(n / 2, 100);
  ASSERT_TRUE(index->remove(static_cast<int64_t>(gone.size()), gone.data()).is_ok());
  ASSERT_TRUE(index->wants_optimize());
  ASSERT_TRUE(index->optimize().is_ok());
  EXPECT_EQ(index->size(), n - n / 2);
  EXPECT_GE(self_first(top5(*index, x, d)), 7);
}

TEST(QuantizedIndexStorage, IvfPqHoldsMBytesPerVectorAndRoundTrips) {
  const int d = 16;
  VectorIndexConfig c;
  c.type = "ivf";
  c.dimension = d;
  c.metric = IndexMetric::kInnerProduct;
  c.ivf_nlist = 64;
  c.ivf_nprobe = 64;  // every list: only the codes' error remains
  c.ivf_train_min = 1000;  // raised to 39 * 2^6 = 2496 for the codebooks
  c.quantizer = "pq";
  c.pq_m = 8;      // 2 components a code
  c.pq_nbits = 6;  // 6 bytes a vector (FAISS packs the 8 codes' bits); small codebooks train fast
  auto made = make_vector_index(c);
  ASSERT_TRUE(made.is_ok());
  auto& index = *made;
  const int64_t n = 4000;
  const auto x = random_vectors(n, d, 11);
  const auto labels = iota_labels(n);
  ASSERT_TRUE(index->add(2400, labels.data(), x.data()).is_ok());
  EXPECT_FALSE(index->wants_optimize());  // 2400 < 2496
  ASSERT_TRUE(index->add(n - 2400, labels.data() + 2400, x.data() + 2400 * d).is_ok());
  ASSERT_TRUE(index->wants_optimize());
  ASSERT_TRUE(index->optimize().is_ok());
  EXPECT_EQ(index->type(), "ivf");
  EXPECT_TRUE(index->lossy());
  // 6 code bytes + 8 id bytes + 2 hash entries (80) + centroids (64 x 16 floats) and codebooks
  // (8 x 64 x 2 floats) amortised: about 1 byte each.
  const int64_t bpv = index->memory_bytes() / n;
  EXPECT_GE(bpv, 6 + 8 + 80);
  EXPECT_LE(bpv, 6 + 8 + 80 + 3);
  std::vector<int64_t> out_labels;
  std::vector<float> rows;
  ASSERT_TRUE(index->export_live(&out_labels, &rows).is_ok());
  ASSERT_EQ(static_cast<int64_t>(out_labels.size()), n);
  double err2 = 0, norm2 = 0;
  for (size_t i = 0; i < out_labels.size(); ++i)
    for (int j = 0; j < d; ++j) {
      const double o = x[out_labels[i] * d + j];
      err2 += (rows[i * d + j] - o) * (rows[i * d + j] - o);
      norm2 += o * o;
    }
  EXPECT_GT(err2, 0);
  EXPECT_LT(err2 / norm2, 0.5) << "decoded rows should keep most of the signal";
  const auto before = top5(*index, x, d);
  std::string bytes;
  ASSERT_TRUE(index->serialize(&bytes).is_ok());
  auto back = make_vector_index_from(c, bytes);
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(top5(**back, x, d), before);
  EXPECT_EQ((*back)->size(), n);
  VectorIndexConfig other = c;
  other.pq_m = 4;
  EXPECT_EQ(make_vector_index_from(other, bytes).status().code(), StatusCode::kCorruption);
  other = c;
  other.quantizer = "none";
  EXPECT_EQ(make_vector_index_from(other, bytes).status().code(), StatusCode::kCorruption);
  // Removal and replacement work on the codes' lists.
  std::vector<int64_t> gone = {0, 1, 2};
  ASSERT_TRUE(index->remove(3, gone.data()).is_ok());
  EXPECT_EQ(index->size(), n - 3);
  EXPECT_FALSE(index->contains(1));
}

TEST(QuantizedIndexStorage, ConfigValidation) {
  VectorIndexConfig c;
  c.dimension = 30;
  c.type = "flat";
  c.quantizer = "sq8";
  EXPECT_EQ(make_vector_index(c).status().code(), StatusCode::kInvalidArgument);
  c.type = "ivf";
  c.quantizer = "pq";
  c.pq_m = 8;  // does not divide 30
  EXPECT_EQ(make_vector_index(c).status().code(), StatusCode::kInvalidArgument);
  c.pq_m = 10;
  c.pq_nbits = 13;
  EXPECT_EQ(make_vector_index(c).status().code(), StatusCode::kInvalidArgument);
  c.pq_nbits = 8;
  EXPECT_TRUE(make_vector_index(c).is_ok());
}

}  // namespace
}  // namespace qsearch
