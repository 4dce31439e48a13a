// Quantized index types (issue 14): HNSW over sq8 / fp16 codes and IVF-PQ, each rescoring its
// best `rescore` candidates exactly from the stored embeddings (collection_search.cc).
//
// Data: 50k clustered vectors of 128 dims (200 Gaussian centres, points at noise 0.5 around
// them; cosine metric), 100 queries drawn the same way. Within a cluster the neighbours are
// decided by isotropic noise, i.e. a uniform random set of ~250 points: the quantizers must
// rank those, which is where they lose precision. Ground truth: brute force in double.
#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <cmath>
#include <random>
#include <thread>
#include <unordered_map>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;
using Clock = std::chrono::steady_clock;

constexpr int kDim = 128;
constexpr int kDocs = 50000;
constexpr int kQueries = 100;
constexpr int kK = 10;

struct Data {
  std::vector<std::vector<float>> docs, queries;
  std::vector<std::vector<int>> truth;  // exact top kK doc indexes per query
};

std::vector<float> normalized(std::vector<float> v) {
  double n = 0;
  for (float x : v) n += static_cast<double>(x) * x;
  const float inv = static_cast<float>(1.0 / std::sqrt(n));
  for (float& x : v) x *= inv;
  return v;
}

double cosine(const std::vector<float>& q, const std::vector<float>& v) {
  double dot = 0;
  for (int j = 0; j < kDim; ++j) dot += static_cast<double>(q[j]) * v[j];
  return dot;
}

const Data& data() {
  static const Data* d = [] {
    auto* out = new Data;
    std::mt19937_64 rng(42);
    std::normal_distribution<float> g;
    std::vector<std::vector<float>> centres(200, std::vector<float>(kDim));
    for (auto& c : centres)
      for (float& x : c) x = g(rng);
    auto draw = [&] {
      std::vector<float> v = centres[rng() % centres.size()];
      for (float& x : v) x += 0.5f * g(rng);
      return normalized(std::move(v));
    };
    for (int i = 0; i < kDocs; ++i) out->docs.push_back(draw());
    for (int i = 0; i < kQueries; ++i) out->queries.push_back(draw());
    for (const auto& q : out->queries) {
      std::vector<std::pair<double, int>> scored(kDocs);
      for (int i = 0; i < kDocs; ++i) scored[i] = {-cosine(q, out->docs[i]), i};
      std::partial_sort(scored.begin(), scored.begin() + kK, scored.end());
      std::vector<int> top;
      for (int i = 0; i < kK; ++i) top.push_back(scored[i].second);
      out->truth.push_back(std::move(top));
    }
    return out;
  }();
  return *d;
}

bool wait_for(const std::function<bool()>& done, int timeout_s) {
  const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

void load(CollectionStore* s, const std::string& name) {
  const Data& D = data();
  for (int start = 0; start < kDocs; start += 5000) {
    std::vector<Document> batch;
    for (int i = start; i < start + 5000; ++i) batch.push_back(doc("d" + std::to_string(i), D.docs[i]));
    ASSERT_TRUE(s->upsert(name, batch).is_ok());
  }
}

using Results = std::vector<std::vector<SearchHit>>;

Results search_all(CollectionStore* s, const std::string& name) {
  Results out;
  for (const auto& q : data().queries) {
    auto hits = s->search(name, q, top_k(kK));
    EXPECT_TRUE(hits.is_ok()) << hits.status().to_string();
    out.push_back(hits.is_ok() ? *hits : std::vector<SearchHit>());
  }
  return out;
}

// Recall@10 against the exact top 10; also checks that every score is the exact cosine.
double recall_and_exact_scores(const Results& results) {
  const Data& D = data();
  int found = 0;
  double worst = 0;
  for (int qi = 0; qi < kQueries; ++qi) {
    for (const SearchHit& h : results[qi]) {
      const int idx = std::stoi(h.id.substr(1));
      worst = std::max(worst, std::abs(h.score - cosine(D.queries[qi], D.docs[idx])));
      if (std::find(D.truth[qi].begin(), D.truth[qi].end(), idx) != D.truth[qi].end()) ++found;
    }
  }
  EXPECT_LT(worst, 1e-5) << "rescored scores must be the exact (flat) ones";
  return static_cast<double>(found) / (kQueries * kK);
}

int64_t bytes_per_vector(CollectionStore* s, const std::string& name) {
  auto info = s->get_collection(name);
  EXPECT_TRUE(info.is_ok());
  return info.is_ok() && info->index_vectors > 0 ? info->index_bytes / info->index_vectors : 0;
}

// FAISS's OpenMP regions and OpenBLAS's own threads oversubscribe a 2-core CI machine during
// k-means (IVF-PQ training here ran 5x slower in wall time, 10x in CPU time, spinning): the
// writes (and so IVF training, inline without the background thread) run single-threaded.
// The HNSW inserter thread keeps its OpenMP threads (that path is what the test is about).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : omp_(omp_get_max_threads()), blas_(openblas_get_num_threads()) {
    omp_set_num_threads(1);
    openblas_set_num_threads(1);
  }
  ~SingleThreadedBlas() {
    omp_set_num_threads(omp_);
    openblas_set_num_threads(blas_);
  }

 private:
  int omp_, blas_;
};

// Builds the collection, waits until the approximate structure holds everything, measures
// recall with rescoring, then checks that a saved and reopened index answers identically.
// Returns bytes per vector.
int64_t run_type(const IndexSpec& index, const std::string& settled_type) {
  SingleThreadedBlas single;
  const std::string dir = make_temp_dir("quantized");
  auto s = open_store(dir);
  EXPECT_NE(s, nullptr);
  if (!s) return 0;
  CollectionSpec sp = spec("q", kDim);
  sp.index = index;
  sp.lexical = false;
  EXPECT_TRUE(s->create_collection(sp).is_ok());
  load(s.get(), "q");
  EXPECT_TRUE(wait_for(
      [&] {
        auto info = s->get_collection("q");
        return info.is_ok() && info->index_pending == 0 && info->index_type == settled_type;
      },
      120));
  const Results before = search_all(s.get(), "q");
  const double recall = recall_and_exact_scores(before);
  EXPECT_GE(recall, 0.95) << index.to_json().dump();
  const int64_t bpv = bytes_per_vector(s.get(), "q");
  std::printf("[ quantized ] %s: recall@10 %.3f with rescore %d, %lld bytes per vector\n",
              index.to_json().dump().c_str(), recall, index.rescore, static_cast<long long>(bpv));

  EXPECT_TRUE(s->save_indexes().is_ok());
  s.reset();
  s = open_store(dir);
  EXPECT_NE(s, nullptr);
  if (!s) return bpv;
  auto info = s->get_collection("q");
  EXPECT_TRUE(info.is_ok());
  if (info.is_ok()) {
    EXPECT_EQ(info->spec.index.quantizer, index.quantizer);
    EXPECT_EQ(info->index_type, settled_type);
    EXPECT_EQ(info->index_vectors, kDocs);
  }
  const Results after = search_all(s.get(), "q");
  for (int qi = 0; qi < kQueries; ++qi) {
    EXPECT_EQ(after[qi].size(), before[qi].size());
    if (after[qi].size() != before[qi].size()) continue;
    for (size_t i = 0; i < after[qi].size(); ++i) {
      EXPECT_EQ(after[qi][i].id, before[qi][i].id) << "query " << qi << " rank " << i;
      EXPECT_EQ(after[qi][i].score, before[qi][i].score);
    }
  }
  EXPECT_EQ(bytes_per_vector(s.get(), "q"), bpv);
  return bpv;
}

IndexSpec hnsw(const std::string& quantizer) {
  IndexSpec i;
  i.type = "hnsw";
  i.hnsw_m = 16;
  i.hnsw_ef_construction = 40;
  i.quantizer = quantizer;
  i.rescore = IndexSpec::kDefaultRescore;
  return i;
}

// The fp32 vectors alone take 4*d bytes; a graph of degree 16 and the label maps add the same
// to every type, so sq8 and fp16 differ by d bytes per vector (1 vs 2 per component).
int64_t g_sq8_bpv = 0, g_fp16_bpv = 0;

TEST(QuantizedIndex, HnswSq8MeetsRecallAt50kWithRescoreInAQuarterOfTheVectorBytes) {
  g_sq8_bpv = run_type(hnsw("sq8"), "hnsw");
  EXPECT_GT(g_sq8_bpv, kDim);          // the codes are there
  EXPECT_LT(g_sq8_bpv, 4 * kDim);      // below the fp32 vectors alone (flat: 4*d + maps)
  if (g_fp16_bpv > 0) {
    EXPECT_NEAR(g_fp16_bpv - g_sq8_bpv, kDim, kDim / 10);
  }
}

TEST(QuantizedIndex, HnswFp16MeetsRecallAt50kWithRescoreInHalfTheVectorBytes) {
  g_fp16_bpv = run_type(hnsw("fp16"), "hnsw");
  EXPECT_GT(g_fp16_bpv, 2 * kDim);
  EXPECT_LT(g_fp16_bpv, 4 * kDim);
  if (g_sq8_bpv > 0) {
    EXPECT_NEAR(g_fp16_bpv - g_sq8_bpv, kDim, kDim / 10);
  }
}

TEST(QuantizedIndex, IvfPqMeetsRecallAt50kWithRescoreInMBytesPerCode) {
  IndexSpec i;
  i.type = "ivf";
  i.ivf_nlist = 256;
  i.ivf_train_min = 20000;  // retraining (at 4x) would come at 80k: none during the test
  i.quantizer = "pq";
  i.pq_m = 32;              // 32 bytes per vector at 8 bits, d/4 as the default
  i.pq_nbits = 8;
  i.rescore = IndexSpec::kDefaultRescore;
  const int64_t bpv = run_type(i, "ivf");
  // Codes (32) + id (8) + live set and direct map (2 x 40 estimated) + amortised centroids
  // and codebooks (about 5); flat would be 4*128 + 8 + 40 = 560.
  EXPECT_GE(bpv, 32 + 8 + 80);
  EXPECT_LT(bpv, 32 + 8 + 80 + 10);
}

TEST(QuantizedIndex, SpecValidationNamesTheOffendingKey) {
  auto code = [](const nlohmann::json& j) { return IndexSpec::from_json(j).status(); };
  Status s = code({{"type", "hnsw"}, {"quantizer", "int4"}});
  EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  EXPECT_NE(s.to_string().find("int4"), std::string::npos) << s.to_string();
  s = code({{"type", "ivf"}, {"quantizer", "sq8"}});  // sq8 is an hnsw storage
  EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  s = code({{"type", "flat"}, {"quantizer", "sq8"}});
  EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  EXPECT_NE(s.to_string().find("quantizer"), std::string::npos) << s.to_string();
  s = code({{"type", "gpu"}, {"quantizer", "sq8"}});
  EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  EXPECT_NE(s.to_string().find("quantizer"), std::string::npos) << s.to_string();
  s = code({{"type", "flat"}, {"rescore", 10}});  // (gpu has its own "rescore": int8 rows)
  EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  EXPECT_NE(s.to_string().find("rescore"), std::string::npos) << s.to_string();
  s = code({{"type", "ivf"}, {"quantizer", "pq"}, {"pq_nbits", 13}});
  EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  EXPECT_NE(s.to_string().find("pq_nbits"), std::string::npos) << s.to_string();
  s = code({{"type", "ivf"}, {"quantizer", "pq"}, {"pq_nbits", 3}});
  EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  s = code({{"type", "hnsw"}, {"quantizer", "sq8"}, {"rescore", 10001}});
  EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  EXPECT_NE(s.to_string().find("rescore"), std::string::npos) << s.to_string();
  s = code({{"type", "ivf"}, {"pq_m", 8}});  // pq_m without the pq quantizer
  EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  s = code({{"type", "hnsw"}, {"quantizer", 8}});
  EXPECT_EQ(s.code(), StatusCode::kUnprocessable);
  // pq_m must divide the dimension, checked where the dimension is known.
  auto c = CollectionSpec::from_json({{"name", "a"},
                                      {"dimension", 100},
                                      {"index", {{"type", "ivf"}, {"quantizer", "pq"}, {"pq_m", 16}}}});
  EXPECT_EQ(c.status().code(), StatusCode::kUnprocessable);
  EXPECT_NE(c.status().to_string().find("pq_m"), std::string::npos) << c.status().to_string();
}

TEST(QuantizedIndex, SpecDefaultsAndStoredFormOfOldSpecsUnchanged) {
  // A quantizer brings rescoring by default; pq_m defaults to d/4 once the dimension is known.
  auto sq = IndexSpec::from_json({{"type", "hnsw"}, {"quantizer", "sq8"}});
  ASSERT_TRUE(sq.is_ok());
  EXPECT_EQ(sq->rescore, IndexSpec::kDefaultRescore);
  auto pq = CollectionSpec::from_json(
      {{"name", "a"}, {"dimension", 1024}, {"index", {{"type", "ivf"}, {"quantizer", "pq"}}}});
  ASSERT_TRUE(pq.is_ok());
  EXPECT_EQ(pq->index.pq_m, 256);
  EXPECT_EQ(pq->index.pq_nbits, 8);
  auto back = IndexSpec::from_json(pq->index.to_json());
  ASSERT_TRUE(back.is_ok());
  EXPECT_EQ(back->to_json(), pq->index.to_json());
  // Without a quantizer: no new keys in the stored form, rescoring off.
  auto plain = IndexSpec::from_json({{"type", "hnsw"}, {"m", 16}});
  ASSERT_TRUE(plain.is_ok());
  EXPECT_EQ(plain->rescore, 0);
  EXPECT_EQ(plain->to_json(), (nlohmann::json{{"type", "hnsw"}, {"m", 16}, {"ef_construction", 200},
                                              {"ef_search", 128}}));
  // gpu's "rescore" stays the gpu index's own; the collection does not rescore it again.
  auto gpu = IndexSpec::from_json({{"type", "gpu"}, {"precision", "int8"}, {"rescore", 32}});
  ASSERT_TRUE(gpu.is_ok());
  EXPECT_EQ(gpu->gpu_rescore, 32);
  EXPECT_EQ(gpu->rescore, 0);
  EXPECT_EQ(IndexSpec::from_json(gpu->to_json())->to_json(), gpu->to_json());
  // Rescoring an unquantized index is allowed (e.g. to widen the candidate set).
  auto r = IndexSpec::from_json({{"type", "ivf"}, {"rescore", 50}});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->rescore, 50);
  EXPECT_EQ(r->to_json()["rescore"], 50);
}

}  // namespace
}  // namespace qsearch

namespace qsearch {
namespace {

using namespace testing_util;

// Rescoring reads a chunk's own row of the stored embedding: on an exact index (IVF below its
// training size is a flat scan; rescore is refused on "flat" itself) the rescored results
// (ids, best chunk, scores) equal the unrescored ones, for l2 and cosine.
TEST(QuantizedIndex, RescoringUsesEachChunksOwnRow) {
  constexpr int d = 16;
  for (Metric metric : {Metric::kCosine, Metric::kL2}) {
    const std::string dir = make_temp_dir("rescore-chunks");
    auto s = open_store(dir);
    ASSERT_NE(s, nullptr);
    for (int rescore : {0, 50}) {
      CollectionSpec sp = spec("c" + std::to_string(rescore), d, "ivf", metric);
      sp.chunking = ChunkingOptions{64, 8};
      sp.index.rescore = rescore;
      Status created = s->create_collection(sp);
      ASSERT_TRUE(created.is_ok()) << created.to_string();
      std::vector<Document> docs;
      for (int i = 0; i < 40; ++i) {
        const std::string id = "d" + std::to_string(i);
        Document doc_i = doc(id, {}, {}, "text of " + id);
        for (int c = 0; c < 1 + i % 4; ++c) {
          std::vector<float> v = vector_for(id, c, d);
          doc_i.embedding.insert(doc_i.embedding.end(), v.begin(), v.end());
          doc_i.chunks.push_back({c * 10, c * 10 + 12, 5});
        }
        docs.push_back(std::move(doc_i));
      }
      ASSERT_TRUE(s->upsert(sp.name, docs).is_ok());
    }
    for (int q = 0; q < 10; ++q) {
      const std::vector<float> query = vector_for("q", q, d);
      auto plain = s->search("c0", query, top_k(5));
      auto rescored = s->search("c50", query, top_k(5));
      ASSERT_TRUE(plain.is_ok() && rescored.is_ok());
      ASSERT_EQ(plain->size(), rescored->size());
      for (size_t i = 0; i < plain->size(); ++i) {
        EXPECT_EQ((*plain)[i].id, (*rescored)[i].id);
        EXPECT_EQ((*plain)[i].chunk, (*rescored)[i].chunk);
        EXPECT_NEAR((*plain)[i].score, (*rescored)[i].score, 1e-5);
      }
    }
  }
}

}  // namespace
}  // namespace qsearch

namespace qsearch {
namespace {

using namespace testing_util;

// Deletes push an sq8 graph past its tombstone share: the background rebuild (which takes its
// vectors from the store, the index holding only codes) trains afresh and swaps in; every
// remaining document is still found by its own vector with the exact score.
TEST(QuantizedIndex, Sq8RebuildAfterDeletesKeepsEveryDocument) {
  constexpr int d = 16;
  const std::string dir = make_temp_dir("sq8-rebuild");
  auto s = open_store(dir, /*save_interval_s=*/1);  // the background thread runs optimisations
  ASSERT_NE(s, nullptr);
  CollectionSpec sp = spec("r", d, "hnsw");
  sp.index.quantizer = "sq8";
  sp.index.rescore = 20;
  sp.index.hnsw_ef_construction = 40;
  sp.lexical = false;
  ASSERT_TRUE(s->create_collection(sp).is_ok());
  const int n = 16000, removed = 5000;  // 31% tombstones (> 25%); 11000 live, enough to train
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i) docs.push_back(doc("d" + std::to_string(i), vector_for("d" + std::to_string(i), 0, d)));
  ASSERT_TRUE(s->upsert("r", docs).is_ok());
  // All in the graph first (removing pending vectors leaves no tombstones).
  const auto settle = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < settle) {
    auto info = s->get_collection("r");
    if (info.is_ok() && info->index_pending == 0 && info->index_type == "hnsw") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(s->get_collection("r")->index_type, "hnsw");
  std::vector<std::string> gone;
  for (int i = 0; i < removed; ++i) gone.push_back("d" + std::to_string(i));
  auto removed_count = s->remove_documents("r", gone);
  ASSERT_TRUE(removed_count.is_ok() && *removed_count == removed);
  EXPECT_EQ(s->get_collection("r")->index_vectors, n) << "tombstones until the rebuild";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  int64_t vectors = -1;
  std::string type;
  while (std::chrono::steady_clock::now() < deadline) {
    auto info = s->get_collection("r");
    ASSERT_TRUE(info.is_ok());
    vectors = info->index_vectors;
    type = info->index_type;
    if (vectors == n - removed && type == "hnsw" && info->index_pending == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(vectors, n - removed) << "tombstones were not compacted";
  EXPECT_EQ(type, "hnsw");
  for (int i = removed; i < n; i += 500) {
    const std::string id = "d" + std::to_string(i);
    auto hits = s->search("r", vector_for(id, 0, d), top_k(1));
    ASSERT_TRUE(hits.is_ok());
    ASSERT_EQ(hits->size(), 1u);
    EXPECT_EQ((*hits)[0].id, id);
    EXPECT_NEAR((*hits)[0].score, 1.0, 1e-5);
  }
  EXPECT_TRUE(rocks(s.get())->check_consistency("r").is_ok());
}

}  // namespace
}  // namespace qsearch
