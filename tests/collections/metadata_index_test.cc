// The metadata index (collection/metadata_index.h) and the filter push-down: the index holds
// exactly the entries of the stored documents through upserts, replacements, patches and
// deletes; it is rebuilt when missing; count and filtered search through it agree with a
// brute-force reference for every kind of filter it narrows (and the ones it does not); and a
// selective filter pushed into HNSW and IVF keeps exact recall.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;
using json = nlohmann::json;

class MetadataIndex : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("metaidx");
    store_ = open_store(dir_);
    ASSERT_NE(store_, nullptr);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  Filter parse(const json& f) {
    auto p = Filter::parse(f);
    EXPECT_TRUE(p.is_ok()) << p.status().to_string();
    return p.is_ok() ? *p : Filter();
  }
  std::string dir_;
  std::unique_ptr<CollectionStore> store_;
};

// Metadata with every kind of value the index encodes: ints, floats, negative numbers, big
// integers, strings (incl. long ones and ones with NUL bytes), booleans, null, arrays, nesting.
json random_metadata(std::mt19937_64& rng, int i) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  json m = {{"i", i}, {"g", pick(10)}, {"x", (pick(200) - 100) * 0.25}};
  if (pick(4)) m["s"] = std::string(1, "abcde"[pick(5)]) + (pick(2) ? "x" : "");
  if (pick(3) == 0) m["long"] = std::string(300, 'L') + std::to_string(pick(3));
  if (pick(5) == 0) m["nul"] = std::string("a\0b", 3) + std::to_string(pick(2));
  if (pick(3) == 0) m["flag"] = pick(2) == 1;
  if (pick(6) == 0) m["none"] = nullptr;
  if (pick(3)) {
    json tags = json::array();
    for (int t = pick(4); t > 0; --t) tags.push_back(std::string(1, "pqr"[pick(3)]));
    m["tags"] = tags;
  }
  if (pick(2)) m["n"] = {{"a", pick(4)}, {"b", {{"c", std::string(1, "uv"[pick(2)])}}}};
  if (pick(8) == 0) m["big"] = 9007199254740993ULL + static_cast<uint64_t>(pick(3));
  if (pick(8) == 0) m["n"] = "not an object";
  return m;
}

const std::vector<json>& filters() {
  static const std::vector<json> f = {
      {{"g", 3}},
      {{"g", 3.0}},
      {{"g", "3"}},
      {{"g", {{"$in", {1, 2, 8}}}}},
      {{"x", {{"$gt", 10}}}},
      {{"x", {{"$gte", -2.5}, {"$lt", 0}}}},
      {{"x", {{"$lte", -20}}}},
      {{"s", "bx"}},
      {{"s", {{"$gte", "c"}}}},
      {{"s", {{"$lt", "b"}}}},
      {{"s", {{"$gt", "bx"}}}},
      {{"long", std::string(300, 'L') + "1"}},
      {{"long", {{"$gt", std::string(300, 'L') + "0"}}}},
      {{"long", {{"$lte", std::string(300, 'L') + "1"}}}},
      {{"nul", std::string("a\0b", 3) + "1"}},
      {{"nul", {{"$lt", std::string("a\0b", 3) + "1"}}}},
      {{"flag", true}},
      {{"none", nullptr}},
      {{"tags", "q"}},
      {{"tags", {{"$in", {"p", "r"}}}}},
      {{"n.a", 2}},
      {{"n.b.c", "v"}},
      {{"n.b", {{"$exists", true}}}},
      {{"n", {{"$exists", true}}}},
      {{"tags", {{"$exists", true}}}},
      {{"big", 9007199254740994ULL}},
      {{"big", {{"$gt", 9007199254740993ULL}}}},
      {{"$or", {{{"g", 1}}, {{"s", "a"}}}}},
      {{"$and", {{{"g", {{"$gte", 5}}}}, {{"tags", "p"}}}}},
      {{"g", {{"$lt", 5}}}, {"flag", false}},
      {{"g", 3}, {"s", {{"$ne", "a"}}}},  // $ne: narrowed by g alone
      {{"$not", {{"g", 3}}}},             // not narrowed: scan
      {{"g", {{"$nin", {1, 2}}}}},
      {{"$or", {{{"g", 1}}, {{"s", {{"$ne", "a"}}}}}}},
      {{"missing", 1}},
      {{"none", {{"$exists", false}}}},
  };
  return f;
}

TEST_F(MetadataIndex, CountAndFilteredSearchAgreeWithTheReferenceThroughEveryChange) {
  const int d = 8, n = 600;
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  std::mt19937_64 rng(3);
  std::map<std::string, Document> live;
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i) {
    docs.push_back(doc("d" + std::to_string(i), vector_for("d", i, d), random_metadata(rng, i)));
    live[docs.back().id] = docs.back();
  }
  ASSERT_TRUE(store_->upsert("c", docs).is_ok());
  auto check_all = [&](const char* stage) {
    ASSERT_TRUE(rocks(store_.get())->check_metadata_index("c").is_ok())
        << stage << ": " << rocks(store_.get())->check_metadata_index("c").to_string();
    const auto q = vector_for("q", 0, d);
    for (const json& fj : filters()) {
      Filter f = parse(fj);
      std::vector<std::pair<float, std::string>> want;
      for (const auto& [id, dd] : live) {
        if (!f.matches(dd.metadata)) continue;
        std::vector<float> e = dd.embedding, qq = q;
        normalize_l2(e.data(), d);
        normalize_l2(qq.data(), d);
        double s = 0;
        for (int j = 0; j < d; ++j) s += e[j] * qq[j];
        want.emplace_back(static_cast<float>(-s), id);
      }
      std::sort(want.begin(), want.end());
      auto cnt = store_->count("c", f);
      ASSERT_TRUE(cnt.is_ok());
      EXPECT_EQ(*cnt, static_cast<int64_t>(want.size())) << stage << " " << fj.dump();
      auto hits = store_->search("c", q, top_k(5, fj));
      ASSERT_TRUE(hits.is_ok()) << hits.status().to_string();
      ASSERT_EQ(hits->size(), std::min<size_t>(5, want.size())) << stage << " " << fj.dump();
      for (size_t r = 0; r < hits->size(); ++r)
        EXPECT_EQ((*hits)[r].id, want[r].second) << stage << " " << fj.dump() << " rank " << r;
    }
  };
  check_all("after insert");
  // Replacements (new metadata, new labels), patches, single and bulk deletes.
  std::vector<Document> again;
  for (int i = 0; i < n; i += 3) {
    again.push_back(doc("d" + std::to_string(i), vector_for("d2", i, d), random_metadata(rng, i)));
    live[again.back().id] = again.back();
  }
  ASSERT_TRUE(store_->upsert("c", again).is_ok());
  for (int i = 1; i < n; i += 7) {
    const std::string id = "d" + std::to_string(i);
    json patch = {{"g", static_cast<int>(rng() % 10)}, {"tags", nullptr}, {"n", {{"a", 9}}}};
    auto p = store_->patch_metadata("c", id, patch);
    ASSERT_TRUE(p.is_ok());
    live[id].metadata.merge_patch(patch);
    EXPECT_EQ(p->metadata, live[id].metadata);
  }
  for (int i = 2; i < n; i += 11) {
    ASSERT_TRUE(store_->remove("c", "d" + std::to_string(i)).is_ok());
    live.erase("d" + std::to_string(i));
  }
  auto removed = store_->remove_matching("c", parse({{"g", 7}, {"x", {{"$gt", 0}}}}));
  ASSERT_TRUE(removed.is_ok());
  int64_t want_removed = 0;
  for (auto it = live.begin(); it != live.end();) {
    const json& m = it->second.metadata;
    if (m["g"] == 7 && m["x"].get<double>() > 0) {
      it = live.erase(it);
      ++want_removed;
    } else {
      ++it;
    }
  }
  EXPECT_EQ(*removed, want_removed);
  check_all("after changes");
  store_.reset();
  store_ = open_store(dir_);
  ASSERT_NE(store_, nullptr);
  check_all("after reopen");
}

// The filter cache (collection/filter_cache.h): a filter that comes again is served from it
// while nothing is written, and any write (an insert, a metadata patch, a delete) is seen by
// the next search with that filter.
TEST_F(MetadataIndex, FilterCacheServesRepeatsAndNeverHidesAWrite) {
  const int d = 8;
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  std::vector<Document> docs;
  for (int i = 0; i < 400; ++i)
    docs.push_back(doc("d" + std::to_string(i), vector_for("d", i, d), {{"g", i % 20}}));
  ASSERT_TRUE(store_->upsert("c", docs).is_ok());
  const json f = {{"g", 1}};
  const auto q = vector_for("q", 0, d);
  auto cache_hits = [&] { return rocks(store_.get())->filter_cache_hits("c"); };
  auto first = store_->search("c", q, top_k(3, f));
  ASSERT_TRUE(first.is_ok());
  ASSERT_EQ(first->size(), 3u);
  const uint64_t hits0 = cache_hits();
  auto again = store_->search("c", q, top_k(3, f));
  ASSERT_TRUE(again.is_ok());
  EXPECT_EQ(cache_hits(), hits0 + 1);  // served from the cache
  for (size_t r = 0; r < 3; ++r) EXPECT_EQ((*again)[r].id, (*first)[r].id);
  // A new matching document equal to the query: the next search finds it first.
  ASSERT_TRUE(store_->upsert("c", {doc("new", q, {{"g", 1}})}).is_ok());
  auto after_insert = store_->search("c", q, top_k(3, f));
  ASSERT_TRUE(after_insert.is_ok());
  ASSERT_FALSE(after_insert->empty());
  EXPECT_EQ((*after_insert)[0].id, "new");
  // Its metadata changes: it no longer matches.
  ASSERT_TRUE(store_->patch_metadata("c", "new", {{"g", 2}}).is_ok());
  auto after_patch = store_->search("c", q, top_k(3, f));
  ASSERT_TRUE(after_patch.is_ok());
  for (const auto& h : *after_patch) EXPECT_NE(h.id, "new");
  // Back to matching, then deleted.
  ASSERT_TRUE(store_->patch_metadata("c", "new", {{"g", 1}}).is_ok());
  ASSERT_EQ((*store_->search("c", q, top_k(3, f)))[0].id, "new");
  ASSERT_TRUE(store_->remove("c", "new").is_ok());
  auto after_delete = store_->search("c", q, top_k(3, f));
  ASSERT_TRUE(after_delete.is_ok());
  for (const auto& h : *after_delete) EXPECT_NE(h.id, "new");
  // A write to another collection also invalidates (the cache keys on the store's sequence):
  // the result is the same, computed again.
  ASSERT_TRUE(store_->create_collection(spec("other", d)).is_ok());
  const uint64_t hits1 = cache_hits();
  auto after_other = store_->search("c", q, top_k(3, f));
  ASSERT_TRUE(after_other.is_ok());
  EXPECT_EQ(cache_hits(), hits1);
  ASSERT_EQ(after_other->size(), after_delete->size());
  for (size_t r = 0; r < after_other->size(); ++r)
    EXPECT_EQ((*after_other)[r].id, (*after_delete)[r].id);
}

// A large collection's value entries are read in label slices by several threads: the same
// candidates whatever the hint (exact, too small, too large) and slice size.
TEST_F(MetadataIndex, SlicedScansGiveTheSameCandidates) {
  const int d = 4, n = 700;
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  std::mt19937_64 rng(5);
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i)
    docs.push_back(doc("d" + std::to_string(i), vector_for("d", i, d), random_metadata(rng, i)));
  ASSERT_TRUE(store_->upsert("c", docs).is_ok());
  const uint64_t cid = rocks(store_.get())->collection_id("c");
  const store::KvStore& kv = rocks(store_.get())->kv();
  for (const json& fj : filters()) {
    Filter f = parse(fj);
    auto want = metadata_candidates(kv, cid, f, n);
    ASSERT_TRUE(want.is_ok());
    for (auto [hint, slice] : std::vector<std::pair<int64_t, int64_t>>{
             {n, 64}, {n, 7}, {100, 16}, {100000, 1000}, {n, 1}}) {
      auto got = metadata_candidates(kv, cid, f, n, hint, slice);
      ASSERT_TRUE(got.is_ok());
      ASSERT_EQ(got->has_value(), want->has_value()) << fj.dump();
      if (*want) EXPECT_EQ(**got, **want) << fj.dump() << " hint " << hint << " slice " << slice;
    }
    // The max_documents bound holds across slices too (one-term filters: in a conjunction a
    // term over the bound is skipped and the others narrow).
    if (*want && (*want)->size() > 2 && fj.size() == 1 && fj.begin().key()[0] != '$') {
      auto capped = metadata_candidates(kv, cid, f, (*want)->size() - 1, n, 16);
      ASSERT_TRUE(capped.is_ok());
      EXPECT_FALSE(capped->has_value()) << fj.dump();
    }
  }
}

TEST_F(MetadataIndex, RebuiltWhenMissing) {
  const int d = 4;
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  std::vector<Document> docs;
  for (int i = 0; i < 300; ++i)
    docs.push_back(doc("d" + std::to_string(i), vector_for("d", i, d), {{"g", i % 3}}));
  ASSERT_TRUE(store_->upsert("c", docs).is_ok());
  ASSERT_TRUE(rocks(store_.get())->drop_metadata_index("c").is_ok());
  EXPECT_FALSE(rocks(store_.get())->check_metadata_index("c").is_ok());  // the check can fail
  store_.reset();
  store_ = open_store(dir_);
  ASSERT_NE(store_, nullptr);
  EXPECT_TRUE(rocks(store_.get())->check_metadata_index("c").is_ok());
  EXPECT_EQ(*store_->count("c", parse({{"g", 1}})), 100);
}

// A selective filter goes into the index as an explicit label set: HNSW and IVF return exactly
// the filtered nearest neighbours (recall 1.0), and so does flat.
TEST_F(MetadataIndex, PushedDownFilterKeepsExactRecallOnEveryIndexType) {
  const int d = 16, n = 3000;
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i)
    docs.push_back(
        doc("d" + std::to_string(i), vector_for("d", i, d), {{"p100", i % 100}, {"p10", i % 10}}));
  for (const char* type : {"flat", "hnsw", "ivf"}) {
    ASSERT_TRUE(store_->create_collection(spec(type, d, type)).is_ok());
    ASSERT_TRUE(store_->upsert(type, docs).is_ok());
  }
  EXPECT_EQ(store_->get_collection("ivf")->index_type, "ivf");
  for (const json& fj : {json{{"p100", 42}}, json{{"p10", {{"$in", {3, 4}}}}}}) {
    Filter f = parse(fj);
    for (int t = 0; t < 20; ++t) {
      auto q = vector_for("q", t, d);
      std::vector<std::pair<float, std::string>> want;
      for (const auto& dd : docs) {
        if (!f.matches(dd.metadata)) continue;
        std::vector<float> e = dd.embedding, qq = q;
        normalize_l2(e.data(), d);
        normalize_l2(qq.data(), d);
        double s = 0;
        for (int j = 0; j < d; ++j) s += e[j] * qq[j];
        want.emplace_back(static_cast<float>(-s), dd.id);
      }
      std::sort(want.begin(), want.end());
      for (const char* type : {"flat", "hnsw", "ivf"}) {
        auto hits = store_->search(type, q, top_k(10, fj));
        ASSERT_TRUE(hits.is_ok());
        ASSERT_EQ(hits->size(), 10u) << type;
        for (size_t r = 0; r < 10; ++r)
          EXPECT_EQ((*hits)[r].id, want[r].second) << type << " " << fj.dump();
      }
    }
  }
}

}  // namespace
}  // namespace qsearch
