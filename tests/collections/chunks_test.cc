// Chunked documents in the CollectionStore: one index label per chunk, search returns each
// document once by its best chunk, replace/remove take all chunks in one batch, and loading,
// catching up and rebuilding the index all resolve chunk labels.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;
using Origin = RocksCollectionStore::IndexOrigin;

constexpr int kDim = 16;

CollectionSpec chunked_spec(const std::string& name, const std::string& index = "flat") {
  CollectionSpec s = spec(name, kDim, index);
  s.chunking = ChunkingOptions{64, 8};
  return s;
}

// A document with `n` chunks; chunk i's vector is vector_for(id, version * 100 + i).
Document chunked_doc(const std::string& id, int n, int version = 0, nlohmann::json metadata = {}) {
  Document d = doc(id, {}, std::move(metadata), "text of " + id);
  for (int i = 0; i < n; ++i) {
    std::vector<float> v = vector_for(id, version * 100 + i, kDim);
    d.embedding.insert(d.embedding.end(), v.begin(), v.end());
    d.chunks.push_back({i * 10, i * 10 + 12, 5 + i});
  }
  return d;
}

std::vector<float> chunk_vector(const std::string& id, int i, int version = 0) {
  return vector_for(id, version * 100 + i, kDim);
}

class Chunks : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("chunks");
    store_ = open_store(dir_);
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  int64_t index_vectors(const std::string& name) { return store_->get_collection(name)->index_vectors; }
  std::string dir_;
  std::unique_ptr<CollectionStore> store_;
};

TEST_F(Chunks, SearchReturnsEachDocumentOnceByItsBestChunk) {
  ASSERT_TRUE(store_->create_collection(chunked_spec("c")).is_ok());
  ASSERT_TRUE(store_->upsert("c", {chunked_doc("a", 5, 0, {{"lang", "en"}}), chunked_doc("b", 3),
                                   chunked_doc("c", 1, 0, {{"lang", "en"}})})
                  .is_ok());
  EXPECT_EQ(store_->get_collection("c")->document_count, 3);
  EXPECT_EQ(index_vectors("c"), 9);
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());

  for (int i = 0; i < 5; ++i) {
    auto hits = store_->search("c", chunk_vector("a", i), top_k(3));
    ASSERT_TRUE(hits.is_ok()) << hits.status().to_string();
    ASSERT_EQ(hits->size(), 3u);  // three distinct documents although "a" has five chunks
    std::set<std::string> ids;
    for (const auto& h : *hits) ids.insert(h.id);
    EXPECT_EQ(ids.size(), 3u);
    EXPECT_EQ((*hits)[0].id, "a");
    EXPECT_NEAR((*hits)[0].score, 1.0f, 1e-5);
    EXPECT_EQ((*hits)[0].chunk, i);
    EXPECT_EQ((*hits)[0].chunk_span.start, i * 10);
    EXPECT_EQ((*hits)[0].chunk_span.end, i * 10 + 12);
    EXPECT_EQ((*hits)[0].chunk_span.tokens, 5 + i);
    // Each other document's score is that of its best chunk (brute force over its chunks).
    for (const auto& h : *hits) {
      if (h.id == "a") continue;
      const int n = h.id == "b" ? 3 : 1;
      float best = -2;
      int best_chunk = -1;
      std::vector<float> q = chunk_vector("a", i);
      normalize_l2(q.data(), kDim);
      for (int k = 0; k < n; ++k) {
        std::vector<float> v = chunk_vector(h.id, k);
        normalize_l2(v.data(), kDim);
        float dot = 0;
        for (int j = 0; j < kDim; ++j) dot += q[j] * v[j];
        if (dot > best) best = dot, best_chunk = k;
      }
      EXPECT_NEAR(h.score, best, 1e-5) << h.id;
      EXPECT_EQ(h.chunk, best_chunk) << h.id;
    }
  }
  // k larger than the documents: every document once.
  auto all = store_->search("c", chunk_vector("b", 2), top_k(10));
  ASSERT_TRUE(all.is_ok());
  EXPECT_EQ(all->size(), 3u);
  // exclude_id leaves out every chunk of the document; filters apply per document.
  SearchParams p = top_k(3);
  p.exclude_id = "a";
  auto excluded = store_->search("c", chunk_vector("a", 0), p);
  ASSERT_TRUE(excluded.is_ok());
  ASSERT_EQ(excluded->size(), 2u);
  for (const auto& h : *excluded) EXPECT_NE(h.id, "a");
  auto filtered = store_->search("c", chunk_vector("b", 1), top_k(3, {{"lang", "en"}}, true, true));
  ASSERT_TRUE(filtered.is_ok());
  ASSERT_EQ(filtered->size(), 2u);
  for (const auto& h : *filtered) {
    EXPECT_NE(h.id, "b");
    EXPECT_EQ(h.text, "text of " + h.id);
  }
}

TEST_F(Chunks, ReplaceAndRemoveTakeEveryChunk) {
  ASSERT_TRUE(store_->create_collection(chunked_spec("c")).is_ok());
  ASSERT_TRUE(store_->upsert("c", {chunked_doc("a", 6), chunked_doc("b", 2)}).is_ok());
  EXPECT_EQ(index_vectors("c"), 8);
  // Replace "a" (6 chunks) by a version of 2 chunks: the old chunks are gone from the index.
  ASSERT_TRUE(store_->upsert("c", {chunked_doc("a", 2, 1)}).is_ok());
  EXPECT_EQ(index_vectors("c"), 4);
  EXPECT_EQ(store_->get_collection("c")->document_count, 2);
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());
  auto got = store_->get("c", "a", true);
  ASSERT_TRUE(got.is_ok());
  ASSERT_EQ(got->chunks.size(), 2u);
  EXPECT_EQ(got->embedding.size(), 2u * kDim);
  for (int old = 0; old < 6; ++old) {
    auto hits = store_->search("c", chunk_vector("a", old, 0), top_k(2));
    ASSERT_TRUE(hits.is_ok());
    for (const auto& h : *hits) EXPECT_LT(h.score, 0.999f) << "old chunk " << old << " still found";
  }
  auto fresh = store_->search("c", chunk_vector("a", 1, 1), top_k(1));
  ASSERT_TRUE(fresh.is_ok());
  EXPECT_EQ((*fresh)[0].chunk, 1);
  EXPECT_NEAR((*fresh)[0].score, 1.0f, 1e-5);

  ASSERT_TRUE(store_->remove("c", "a").is_ok());
  EXPECT_EQ(index_vectors("c"), 2);
  EXPECT_EQ(store_->get("c", "a", false).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());
  auto left = store_->search("c", chunk_vector("a", 0, 1), top_k(5));
  ASSERT_TRUE(left.is_ok());
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].id, "b");
}

TEST_F(Chunks, BadChunkedWritesAreRefusedWhole) {
  ASSERT_TRUE(store_->create_collection(chunked_spec("c")).is_ok());
  ASSERT_TRUE(store_->create_collection(spec("plain", kDim)).is_ok());
  // Chunks need a chunking collection.
  EXPECT_EQ(store_->upsert("plain", {chunked_doc("a", 2)}).code(), StatusCode::kUnprocessable);
  // The embedding must hold one vector per chunk.
  Document short_doc = chunked_doc("a", 3);
  short_doc.embedding.resize(2 * kDim);
  EXPECT_EQ(store_->upsert("c", {chunked_doc("ok", 2), short_doc}).code(), StatusCode::kUnprocessable);
  Document bad_range = chunked_doc("r", 2);
  bad_range.chunks[1].end = bad_range.chunks[1].start - 1;
  EXPECT_EQ(store_->upsert("c", {bad_range}).code(), StatusCode::kUnprocessable);
  EXPECT_EQ(store_->get_collection("c")->document_count, 0);  // nothing of the batch written
  EXPECT_EQ(index_vectors("c"), 0);
}

TEST_F(Chunks, DuplicatesScanUsesTheMeanOfTheChunks) {
  ASSERT_TRUE(store_->create_collection(chunked_spec("c")).is_ok());
  ASSERT_TRUE(store_->upsert("c", {chunked_doc("a", 3)}).is_ok());
  std::vector<std::string> ids;
  std::vector<float> vectors;
  ASSERT_TRUE(store_->scan_embeddings("c", Filter(), &ids, &vectors).is_ok());
  ASSERT_EQ(ids.size(), 1u);
  ASSERT_EQ(vectors.size(), static_cast<size_t>(kDim));
  std::vector<float> mean(kDim, 0.0f);
  for (int i = 0; i < 3; ++i) {
    std::vector<float> v = chunk_vector("a", i);
    normalize_l2(v.data(), kDim);
    for (int j = 0; j < kDim; ++j) mean[j] += v[j];
  }
  normalize_l2(mean.data(), kDim);
  for (int j = 0; j < kDim; ++j) EXPECT_NEAR(vectors[j], mean[j], 1e-6);
}

// Reopen with a saved index (loaded), after writes the saved file does not have (caught up
// from the change log, chunk labels included), and without any index file (rebuilt).
TEST_F(Chunks, RecoveryResolvesChunkLabels) {
  for (const char* type : {"flat", "hnsw"}) ASSERT_TRUE(store_->create_collection(chunked_spec(type, type)).is_ok());
  for (const char* type : {"flat", "hnsw"}) {
    for (int k = 0; k < 20; ++k) ASSERT_TRUE(store_->upsert(type, {chunked_doc("d" + std::to_string(k), 1 + k % 4)}).is_ok());
  }
  auto expect_same = [&](CollectionStore* s) {
    for (const char* type : {"flat", "hnsw"}) {
      EXPECT_TRUE(rocks(s)->check_consistency(type).is_ok()) << type;
      for (int k = 0; k < 20; k += 3) {
        const int n = 1 + k % 4;
        auto hits = s->search(type, chunk_vector("d" + std::to_string(k), n - 1), top_k(1));
        ASSERT_TRUE(hits.is_ok());
        ASSERT_EQ(hits->size(), 1u);
        EXPECT_EQ((*hits)[0].id, "d" + std::to_string(k)) << type;
        EXPECT_EQ((*hits)[0].chunk, n - 1) << type;
      }
    }
  };
  ASSERT_TRUE(store_->save_indexes().is_ok());
  // Writes after the save: replacements with other chunk counts, a removal.
  for (const char* type : {"flat", "hnsw"}) {
    ASSERT_TRUE(store_->upsert(type, {chunked_doc("d1", 4, 0), chunked_doc("d5", 3, 0)}).is_ok());
    ASSERT_TRUE(store_->remove(type, "d19").is_ok());
  }
  rocks(store_.get())->set_save_on_close(false);  // as if killed
  store_.reset();
  store_ = open_store(dir_);
  for (const char* type : {"flat", "hnsw"}) {
    EXPECT_EQ(rocks(store_.get())->index_origin(type).value(), Origin::kCaughtUp) << type;
    EXPECT_EQ(store_->get(type, "d1", false)->chunks.size(), 4u);
    EXPECT_EQ(store_->get(type, "d19", false).status().code(), StatusCode::kNotFound);
  }
  expect_same(store_.get());
  const int64_t vectors = index_vectors("flat");
  store_.reset();
  store_ = open_store(dir_);
  for (const char* type : {"flat", "hnsw"}) EXPECT_EQ(rocks(store_.get())->index_origin(type).value(), Origin::kLoaded);
  expect_same(store_.get());
  store_.reset();
  std::filesystem::remove_all(std::filesystem::path(dir_) / "indexes");
  std::filesystem::create_directories(std::filesystem::path(dir_) / "indexes");
  store_ = open_store(dir_);
  for (const char* type : {"flat", "hnsw"}) EXPECT_EQ(rocks(store_.get())->index_origin(type).value(), Origin::kRebuilt);
  EXPECT_EQ(index_vectors("flat"), vectors);
  expect_same(store_.get());
}

}  // namespace
}  // namespace qsearch
