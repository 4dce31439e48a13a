// CollectionStore operations and errors: collections, upsert/get/remove, search (exactness,
// metrics, exclude_id, include, filters), delete.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <set>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;

class Collections : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("coll");
    store_ = open_store(dir_);
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string dir_;
  std::unique_ptr<CollectionStore> store_;
};

TEST_F(Collections, CreateValidatesAndRejectsDuplicates) {
  ASSERT_TRUE(store_->create_collection(spec("docs.v1_A-b", 8)).is_ok());
  EXPECT_EQ(store_->create_collection(spec("docs.v1_A-b", 8)).code(), StatusCode::kAlreadyExists);
  for (const std::string& bad : std::vector<std::string>{"", "a b", "x/y", "caf\xc3\xa9", std::string(129, 'a')}) {
    EXPECT_EQ(store_->create_collection(spec(bad, 8)).code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(store_->create_collection(spec(std::string(128, 'a'), 8)).is_ok());
  EXPECT_EQ(store_->create_collection(spec("zero", 0)).code(), StatusCode::kUnprocessable);
  EXPECT_EQ(store_->create_collection(spec("badidx", 8, "annoy")).code(), StatusCode::kUnprocessable);
  auto info = store_->get_collection("docs.v1_A-b");
  ASSERT_TRUE(info.is_ok());
  EXPECT_EQ(info->spec.dimension, 8);
  EXPECT_EQ(info->spec.model, "test-model@1");  // filled from StoreOptions::model
  EXPECT_EQ(info->document_count, 0);
  EXPECT_EQ(info->index_type, "flat");
  EXPECT_EQ(store_->get_collection("nope").status().code(), StatusCode::kNotFound);
  auto all = store_->list_collections();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].spec.name, std::string(128, 'a'));
  EXPECT_EQ(all[1].spec.name, "docs.v1_A-b");
}

TEST_F(Collections, SpecJsonRoundTripAndValidation) {
  CollectionSpec s = spec("j", 64, "hnsw", Metric::kL2);
  s.index.hnsw_ef_search = 77;
  s.chunking = ChunkingOptions{};
  auto back = CollectionSpec::from_json(s.to_json());
  ASSERT_TRUE(back.is_ok()) << back.status().to_string();
  EXPECT_EQ(back->to_json(), s.to_json());
  EXPECT_EQ(back->index.hnsw_ef_search, 77);
  EXPECT_EQ(back->metric, Metric::kL2);
  EXPECT_EQ(IndexSpec::from_json({{"type", "ivf"}, {"nprobe", 0}}).status().code(), StatusCode::kUnprocessable);
  EXPECT_EQ(IndexSpec::from_json({{"type", "flat"}, {"m", 3}}).status().code(), StatusCode::kUnprocessable);
  EXPECT_EQ(IndexSpec::from_json({{"type", "hnsw"}, {"m", "x"}}).status().code(), StatusCode::kUnprocessable);
  // gpu: precision bf16 (default) or int8, rescore 1..4096; a bad value is 422 naming the key.
  {
    auto gpu = IndexSpec::from_json({{"type", "gpu"}});
    ASSERT_TRUE(gpu.is_ok());
    EXPECT_EQ(gpu->gpu_precision, "bf16");
    auto int8 = IndexSpec::from_json({{"type", "gpu"}, {"precision", "int8"}, {"rescore", 200}});
    ASSERT_TRUE(int8.is_ok()) << int8.status().to_string();
    EXPECT_EQ(int8->gpu_precision, "int8");
    EXPECT_EQ(int8->gpu_rescore, 200);
    auto again = IndexSpec::from_json(int8->to_json());  // stored form round trip
    ASSERT_TRUE(again.is_ok());
    EXPECT_EQ(again->gpu_precision, "int8");
    EXPECT_EQ(again->gpu_rescore, 200);
    for (const nlohmann::json& bad :
         {nlohmann::json{{"type", "gpu"}, {"precision", "fp8"}},
          nlohmann::json{{"type", "gpu"}, {"precision", 8}},
          nlohmann::json{{"type", "gpu"}, {"rescore", 0}},
          nlohmann::json{{"type", "gpu"}, {"rescore", 5000}}}) {
      auto r = IndexSpec::from_json(bad);
      EXPECT_EQ(r.status().code(), StatusCode::kUnprocessable) << bad.dump();
      const std::string key = bad.contains("precision") ? "precision" : "rescore";
      EXPECT_NE(r.status().message().find(key), std::string::npos) << r.status().message();
    }
    EXPECT_EQ(IndexSpec::from_json({{"type", "flat"}, {"precision", "int8"}}).status().code(),
              StatusCode::kUnprocessable);
  }
  EXPECT_EQ(CollectionSpec::from_json({{"name", "a"}, {"metric", "dot"}}).status().code(), StatusCode::kUnprocessable);
  EXPECT_EQ(parse_metric("ip").value(), Metric::kInnerProduct);
  EXPECT_STREQ(metric_name(Metric::kL2), "l2");
}

TEST_F(Collections, UpsertGetReplaceRemove) {
  const int d = 16;
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  Document a = doc("a", vector_for("a", 0, d), {{"lang", "en"}, {"n", 1}}, "hello");
  a.truncated_tokens = 3;
  ASSERT_TRUE(store_->upsert("c", {a, doc("b", vector_for("b", 0, d))}).is_ok());
  auto got = store_->get("c", "a", true);
  ASSERT_TRUE(got.is_ok()) << got.status().to_string();
  EXPECT_EQ(got->text, "hello");
  EXPECT_EQ(got->metadata, (nlohmann::json{{"lang", "en"}, {"n", 1}}));
  EXPECT_EQ(got->tokens, 5);
  EXPECT_EQ(got->truncated_tokens, 3);
  ASSERT_EQ(got->embedding.size(), static_cast<size_t>(d));
  double norm = 0, dot = 0, an = 0;
  for (int i = 0; i < d; ++i) {
    norm += got->embedding[i] * got->embedding[i];
    dot += got->embedding[i] * a.embedding[i];
    an += a.embedding[i] * a.embedding[i];
  }
  EXPECT_NEAR(norm, 1.0, 1e-5);  // cosine collections store normalised vectors
  EXPECT_NEAR(dot / std::sqrt(an), 1.0, 1e-5);
  EXPECT_TRUE(store_->get("c", "a", false)->embedding.empty());
  EXPECT_EQ(store_->get_collection("c")->document_count, 2);

  // Replace: one document per id, the index follows the new embedding.
  ASSERT_TRUE(store_->upsert("c", {doc("a", vector_for("a", 1, d), {{"v", 2}}, "second")}).is_ok());
  auto info = store_->get_collection("c");
  EXPECT_EQ(info->document_count, 2);
  EXPECT_EQ(info->index_vectors, 2);
  EXPECT_EQ(store_->get("c", "a", false)->text, "second");
  auto hits = store_->search("c", vector_for("a", 1, d), top_k(2));
  ASSERT_TRUE(hits.is_ok());
  ASSERT_EQ(hits->size(), 2u);
  EXPECT_EQ((*hits)[0].id, "a");
  EXPECT_NEAR((*hits)[0].score, 1.0, 1e-5);
  // Duplicates in one call: the last one wins.
  ASSERT_TRUE(store_->upsert("c", {doc("x", vector_for("x", 0, d), {}, "first"),
                                   doc("x", vector_for("x", 1, d), {}, "last")})
                  .is_ok());
  EXPECT_EQ(store_->get("c", "x", false)->text, "last");
  EXPECT_EQ(store_->get_collection("c")->document_count, 3);
  EXPECT_EQ(store_->get_collection("c")->index_vectors, 3);

  ASSERT_TRUE(store_->remove("c", "a").is_ok());
  EXPECT_EQ(store_->get("c", "a", false).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->remove("c", "a").code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->remove("nope", "a").code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->get_collection("c")->document_count, 2);
  hits = store_->search("c", vector_for("a", 1, d), top_k(10));
  ASSERT_TRUE(hits.is_ok());
  EXPECT_EQ(hits->size(), 2u);
  for (const auto& h : *hits) EXPECT_NE(h.id, "a");
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());
  auto counts = store_->document_counts();
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0], (std::pair<std::string, int64_t>("c", 2)));
}

TEST_F(Collections, UpsertErrorsWriteNothing) {
  const int d = 8;
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  auto good = doc("ok", vector_for("ok", 0, d));
  EXPECT_EQ(store_->upsert("c", {good, doc("short", std::vector<float>(d - 1, 1.f))}).code(),
            StatusCode::kUnprocessable);
  EXPECT_EQ(store_->upsert("c", {good, doc("", vector_for("", 0, d))}).code(), StatusCode::kInvalidArgument);  // check_document_id()
  EXPECT_EQ(store_->upsert("c", {doc(std::string(513, 'i'), vector_for("i", 0, d))}).code(),
            StatusCode::kUnprocessable);
  EXPECT_TRUE(store_->upsert("c", {doc(std::string(512, 'i'), vector_for("i", 0, d))}).is_ok());
  auto nan = vector_for("n", 0, d);
  nan[3] = std::nanf("");
  EXPECT_EQ(store_->upsert("c", {doc("n", nan)}).code(), StatusCode::kUnprocessable);
  Document bad_meta = good;
  bad_meta.metadata = nlohmann::json::array({1, 2});
  EXPECT_EQ(store_->upsert("c", {bad_meta}).code(), StatusCode::kUnprocessable);
  EXPECT_EQ(store_->upsert("missing", {good}).code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->get("c", "ok", false).status().code(), StatusCode::kNotFound);  // batch refused whole
  EXPECT_EQ(store_->get_collection("c")->document_count, 1);
  EXPECT_TRUE(store_->upsert("c", {}).is_ok());
}

TEST_F(Collections, SearchValidatesArguments) {
  ASSERT_TRUE(store_->create_collection(spec("c", 4)).is_ok());
  std::vector<float> q = {1, 0, 0, 0};
  EXPECT_TRUE(store_->search("c", q, top_k(5))->empty());  // empty collection
  EXPECT_EQ(store_->search("c", q, top_k(0)).status().code(), StatusCode::kUnprocessable);
  EXPECT_EQ(store_->search("c", q, top_k(1001)).status().code(), StatusCode::kUnprocessable);
  EXPECT_TRUE(store_->search("c", q, top_k(1000)).is_ok());
  EXPECT_EQ(store_->search("c", {1, 0, 0}, top_k(5)).status().code(), StatusCode::kUnprocessable);
  EXPECT_EQ(store_->search("nope", q, top_k(5)).status().code(), StatusCode::kNotFound);
  SearchParams p;
  p.filter = nlohmann::json::array();  // a filter that is not an object: the caller's error (400)
  EXPECT_EQ(store_->search("c", q, p).status().code(), StatusCode::kInvalidArgument);
}

// Brute-force reference over the store's own contents.
std::vector<std::pair<std::string, float>> reference(const std::vector<Document>& docs,
                                                     std::vector<float> q, Metric m, int k,
                                                     const nlohmann::json& filter = {}) {
  auto normalize = [](std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += x * x;
    for (float& x : v) x = static_cast<float>(x / std::sqrt(s));
  };
  if (m == Metric::kCosine) normalize(q);
  std::vector<std::pair<std::string, float>> all;
  for (const auto& doc : docs) {
    if (!metadata_matches(doc.metadata, filter)) continue;
    std::vector<float> e = doc.embedding;
    if (m == Metric::kCosine) normalize(e);
    double s = 0;
    for (size_t i = 0; i < q.size(); ++i) s += m == Metric::kL2 ? (e[i] - q[i]) * (e[i] - q[i]) : e[i] * q[i];
    all.emplace_back(doc.id, m == Metric::kL2 ? static_cast<float>(std::sqrt(s)) : static_cast<float>(s));
  }
  std::stable_sort(all.begin(), all.end(), [m](const auto& a, const auto& b) {
    return m == Metric::kL2 ? a.second < b.second : a.second > b.second;
  });
  if (static_cast<int>(all.size()) > k) all.resize(k);
  return all;
}

class SearchExact : public ::testing::TestWithParam<Metric> {};

TEST_P(SearchExact, FlatEqualsBruteForceWithFiltersExcludeAndInclude) {
  const std::string dir = make_temp_dir("exact");
  auto store = open_store(dir);
  const int d = 12, n = 2000;
  const Metric m = GetParam();
  ASSERT_TRUE(store->create_collection(spec("c", d, "flat", m)).is_ok());
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i) {
    const std::string id = "doc-" + std::to_string(i);
    docs.push_back(doc(id, vector_for(id, 0, d),
                       {{"color", i % 3 == 0 ? "red" : "blue"}, {"n", i % 7}, {"rare", i == 1234}},
                       "text " + id));
  }
  for (int i = 0; i < n; i += 500) {
    ASSERT_TRUE(store->upsert("c", std::vector<Document>(docs.begin() + i, docs.begin() + i + 500)).is_ok());
  }
  for (int t = 0; t < 10; ++t) {
    auto q = vector_for("query", t, d);
    auto want = reference(docs, q, m, 10);
    auto got = store->search("c", q, top_k(10));
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    ASSERT_EQ(got->size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ((*got)[i].id, want[i].first);
      EXPECT_NEAR((*got)[i].score, want[i].second, 1e-3 * std::max(1.f, std::fabs(want[i].second)));
      EXPECT_TRUE((*got)[i].text.empty());
      EXPECT_TRUE((*got)[i].metadata.is_null());
    }
    // Filters: two fields; a rare field; a field no document has.
    for (const nlohmann::json& filter :
         {nlohmann::json{{"color", "red"}, {"n", 3}}, nlohmann::json{{"rare", true}},
          nlohmann::json{{"n", 6}}, nlohmann::json{{"missing", 1}}}) {
      SearchParams p = top_k(10, filter, true, true);
      auto fgot = store->search("c", q, p);
      ASSERT_TRUE(fgot.is_ok());
      auto fwant = reference(docs, q, m, 10, filter);
      ASSERT_EQ(fgot->size(), fwant.size()) << filter.dump();
      for (size_t i = 0; i < fwant.size(); ++i) {
        EXPECT_EQ((*fgot)[i].id, fwant[i].first) << filter.dump();
        EXPECT_TRUE(metadata_matches((*fgot)[i].metadata, filter));
        EXPECT_EQ((*fgot)[i].text, "text " + (*fgot)[i].id);
      }
    }
  }
  // exclude_id: search by a document's own embedding leaves it out.
  SearchParams p = top_k(5);
  p.exclude_id = "doc-17";
  auto got = store->search("c", docs[17].embedding, p);
  ASSERT_TRUE(got.is_ok());
  ASSERT_EQ(got->size(), 5u);
  std::vector<Document> others = docs;
  others.erase(others.begin() + 17);
  auto want = reference(others, docs[17].embedding, m, 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ((*got)[i].id, want[i].first);
  if (m != Metric::kInnerProduct) {  // with ip a longer vector can beat the document itself
    auto with_self = store->search("c", docs[17].embedding, top_k(6));
    EXPECT_EQ((*with_self)[0].id, "doc-17");
    for (int i = 0; i < 5; ++i) EXPECT_EQ((*got)[i].id, (*with_self)[i + 1].id);
  }
  store.reset();
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Metrics, SearchExact,
                         ::testing::Values(Metric::kCosine, Metric::kInnerProduct, Metric::kL2));

TEST_F(Collections, ApproximateIndexesFindNeighboursAndHonourFilters) {
  const int d = 24, n = 3000, k = 10;
  ASSERT_TRUE(store_->create_collection(spec("h", d, "hnsw")).is_ok());
  // Random vectors have no cluster structure, so IVF needs a large share of its lists probed
  // (here nlist = min(4*sqrt(3000), 3000/39) = 76 at training time).
  CollectionSpec ivf = spec("i", d, "ivf");
  ivf.index.ivf_nprobe = 38;
  ASSERT_TRUE(store_->create_collection(ivf).is_ok());
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i) {
    const std::string id = std::to_string(i);
    docs.push_back(doc(id, vector_for(id, 0, d), {{"g", i % 10}}));
  }
  EXPECT_EQ(store_->get_collection("i")->index_type, "flat");
  ASSERT_TRUE(store_->upsert("h", docs).is_ok());
  ASSERT_TRUE(store_->upsert("i", std::vector<Document>(docs.begin(), docs.begin() + 299)).is_ok());
  EXPECT_EQ(store_->get_collection("i")->index_type, "flat");
  ASSERT_TRUE(store_->upsert("i", std::vector<Document>(docs.begin() + 299, docs.end())).is_ok());
  EXPECT_EQ(store_->get_collection("i")->index_type, "ivf");
  for (const char* name : {"h", "i"}) {
    double hit = 0, fhit = 0;
    for (int t = 0; t < 50; ++t) {
      auto q = vector_for("q", t, d);
      auto want = reference(docs, q, Metric::kCosine, k);
      auto got = store_->search(name, q, top_k(k));
      ASSERT_TRUE(got.is_ok());
      std::set<std::string> truth;
      for (auto& w : want) truth.insert(w.first);
      for (auto& h : *got) hit += truth.count(h.id);
      SearchParams p = top_k(k, {{"g", 3}});
      auto fwant = reference(docs, q, Metric::kCosine, k, p.filter);
      auto fgot = store_->search(name, q, p);
      ASSERT_TRUE(fgot.is_ok());
      ASSERT_EQ(fgot->size(), static_cast<size_t>(k));
      std::set<std::string> ftruth;
      for (auto& w : fwant) ftruth.insert(w.first);
      for (auto& h : *fgot) {
        EXPECT_EQ(std::stoi(h.id) % 10, 3);
        fhit += ftruth.count(h.id);
      }
    }
    std::cout << "[" << name << "] recall@10 " << hit / (50.0 * k) << ", filtered (10% match) "
              << fhit / (50.0 * k) << "\n";
    EXPECT_GE(hit / (50.0 * k), 0.9) << name;
    EXPECT_GE(fhit / (50.0 * k), 0.9) << name;
    EXPECT_TRUE(rocks(store_.get())->check_consistency(name).is_ok());
  }
}

TEST_F(Collections, DeleteRemovesEverything) {
  const int d = 8;
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  ASSERT_TRUE(store_->upsert("c", {doc("a", vector_for("a", 0, d))}).is_ok());
  ASSERT_TRUE(store_->save_indexes().is_ok());
  const auto files = [&] {
    size_t n = 0;
    for (auto& e : std::filesystem::directory_iterator(dir_ + "/indexes")) n += e.is_regular_file();
    return n;
  };
  EXPECT_EQ(files(), 1u);
  ASSERT_TRUE(store_->delete_collection("c").is_ok());
  EXPECT_EQ(files(), 0u);
  EXPECT_EQ(store_->delete_collection("c").code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->get("c", "a", false).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->upsert("c", {doc("a", vector_for("a", 0, d))}).code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->list_collections().empty());
  // Same name again: a fresh, empty collection.
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  EXPECT_EQ(store_->get("c", "a", false).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->get_collection("c")->document_count, 0);
  auto ids = rocks(store_.get())->document_ids("c");
  ASSERT_TRUE(ids.is_ok());
  EXPECT_TRUE(ids->empty());
  // And it stays deleted across a reopen.
  store_.reset();
  store_ = open_store(dir_);
  EXPECT_EQ(store_->list_collections().size(), 1u);
  EXPECT_EQ(store_->get_collection("c")->document_count, 0);
}

}  // namespace
}  // namespace qsearch
