// Documents API v2 at the store: count, scroll (incl. under concurrent writes and deletes),
// bulk delete by ids and by filter, metadata patches (the vector stays bit-identical), and
// filtered search / duplicates against a brute-force reference.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "collection/duplicates.h"
#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;
using json = nlohmann::json;

class Documents : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("docs");
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
  // Every id a full scroll returns (asserting each page's bounds).
  std::vector<std::string> scroll_all(const std::string& c, const json& filter, int limit,
                                      const std::function<void()>& between_pages = {}) {
    ScrollRequest r;
    r.filter = parse(filter);
    r.limit = limit;
    r.include_text = false;
    std::vector<std::string> ids;
    for (int pages = 0; pages < 100000; ++pages) {
      auto page = store_->scroll(c, r);
      EXPECT_TRUE(page.is_ok()) << page.status().to_string();
      if (!page.is_ok()) break;
      EXPECT_LE(page->documents.size(), static_cast<size_t>(limit));
      for (const auto& d : page->documents) ids.push_back(d.id);
      if (page->next_cursor.empty()) break;
      EXPECT_EQ(page->documents.size(), static_cast<size_t>(limit));
      r.cursor = page->next_cursor;
      if (between_pages) between_pages();
    }
    return ids;
  }
  std::string dir_;
  std::unique_ptr<CollectionStore> store_;
};

json meta_of(int i) {
  return {{"i", i}, {"mod", i % 7}, {"tag", i % 3 == 0 ? "x" : "y"}, {"n", {{"v", i % 5}}}};
}

TEST_F(Documents, CountScrollAndFilteredSearchAgreeWithAReference) {
  const int d = 8, n = 700;
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i)
    docs.push_back(
        doc("d" + std::to_string(i), vector_for(std::to_string(i), 0, d), meta_of(i), "t"));
  ASSERT_TRUE(store_->upsert("c", docs).is_ok());
  const std::vector<json> filters = {
      json::object(),
      {{"mod", 3}},
      {{"i", {{"$gte", 100}, {"$lt", 130}}}},
      {{"$or", {{{"tag", "x"}}, {{"n.v", {{"$in", {1, 2}}}}}}}},
      {{"$not", {{"mod", {{"$ne", 4}}}}}},
      {{"tag", {{"$nin", {"x"}}}}, {"n.v", 0}},
      {{"i", {{"$gt", "5"}}}},  // a string never matches a number: none
  };
  for (const json& f : filters) {
    Filter filter = parse(f);
    std::set<std::string> want;
    for (const auto& dd : docs)
      if (filter.matches(dd.metadata)) want.insert(dd.id);
    auto cnt = store_->count("c", filter);
    ASSERT_TRUE(cnt.is_ok());
    EXPECT_EQ(*cnt, static_cast<int64_t>(want.size())) << f.dump();
    auto ids = scroll_all("c", f, 37);
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()), want) << f.dump();
    EXPECT_EQ(ids.size(), want.size()) << "an id came twice";
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    // Filtered flat search: exactly the best matches.
    auto q = vector_for("q", 1, d);
    auto hits = store_->search("c", q, top_k(10, f, false, true));
    ASSERT_TRUE(hits.is_ok()) << hits.status().to_string();
    EXPECT_EQ(hits->size(), std::min<size_t>(10, want.size())) << f.dump();
    for (const auto& h : *hits) EXPECT_TRUE(want.count(h.id)) << f.dump() << " " << h.id;
  }
  // Bad filters are the caller's error (400), not 422.
  EXPECT_EQ(
      store_->search("c", vector_for("q", 1, d), top_k(3, {{"i", {{"$bad", 1}}}})).status().code(),
      StatusCode::kInvalidArgument);
}

TEST_F(Documents, ScrollPagesIncludesAndCursors) {
  const int d = 4;
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  ASSERT_TRUE(store_->create_collection(spec("other", d)).is_ok());
  std::vector<Document> docs;
  for (int i = 0; i < 5; ++i)
    docs.push_back(doc("k" + std::to_string(i), vector_for("k", i, d), meta_of(i), "text"));
  ASSERT_TRUE(store_->upsert("c", docs).is_ok());
  ScrollRequest r;
  r.limit = 5;
  r.include_embedding = true;
  auto all = store_->scroll("c", r);
  ASSERT_TRUE(all.is_ok());
  EXPECT_TRUE(all->next_cursor.empty());  // exactly limit documents: no empty extra page
  ASSERT_EQ(all->documents.size(), 5u);
  EXPECT_EQ(all->documents[0].text, "text");
  EXPECT_EQ(all->documents[0].metadata, meta_of(0));
  EXPECT_EQ(all->documents[0].embedding.size(), static_cast<size_t>(d));
  r.limit = 2;
  r.include_embedding = r.include_text = r.include_metadata = false;
  auto p1 = store_->scroll("c", r);
  ASSERT_TRUE(p1.is_ok());
  ASSERT_EQ(p1->documents.size(), 2u);
  EXPECT_TRUE(p1->documents[0].embedding.empty());
  EXPECT_TRUE(p1->documents[0].text.empty());
  ASSERT_FALSE(p1->next_cursor.empty());
  // A cursor is bound to its collection instance.
  ScrollRequest elsewhere = r;
  elsewhere.cursor = p1->next_cursor;
  EXPECT_EQ(store_->scroll("other", elsewhere).status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_->delete_collection("c").is_ok());
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  EXPECT_EQ(store_->scroll("c", elsewhere).status().code(), StatusCode::kInvalidArgument);
  for (const std::string& bad :
       std::vector<std::string>{"zz", "0", "01", std::string(40, 'g'), "0100000000000000"}) {
    r.cursor = bad;
    EXPECT_EQ(store_->scroll("c", r).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  r.cursor.clear();
  r.limit = 0;
  EXPECT_EQ(store_->scroll("c", r).status().code(), StatusCode::kUnprocessable);
  r.limit = 1001;
  EXPECT_EQ(store_->scroll("c", r).status().code(), StatusCode::kUnprocessable);
  r.limit = 1000;
  EXPECT_TRUE(store_->scroll("c", r)->documents.empty());
  EXPECT_EQ(store_->scroll("nope", r).status().code(), StatusCode::kNotFound);
}

// Scroll while writers add, replace and delete documents: every document that exists for the
// whole scroll comes exactly once; nothing comes twice.
TEST_F(Documents, ScrollUnderConcurrentWritesAndDeletesIsExactlyOnce) {
  const int d = 8;
  ASSERT_TRUE(store_->create_collection(spec("c", d, "hnsw")).is_ok());
  std::vector<Document> stable, volatile_docs;
  for (int i = 0; i < 1500; ++i) {
    stable.push_back(
        doc("s" + std::to_string(i * 7919 % 100000), vector_for("s", i, d), {{"kind", "s"}}));
    volatile_docs.push_back(doc("v" + std::to_string(i), vector_for("v", i, d), {{"kind", "v"}}));
  }
  ASSERT_TRUE(store_->upsert("c", stable).is_ok());
  ASSERT_TRUE(store_->upsert("c", volatile_docs).is_ok());
  std::atomic<bool> stop{false};
  std::atomic<int64_t> writes{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      std::mt19937 rng(w);
      int round = 0;
      while (!stop) {
        const int i = static_cast<int>(rng() % 1500);
        Status s;
        switch (rng() % 4) {
          case 0: {  // a new document anywhere in id order
            ++round;
            s = store_->upsert("c", {doc("n" + std::to_string(w) + "-" + std::to_string(round),
                                         vector_for("n", round, d), {{"kind", "n"}})});
            break;
          }
          case 1:  // a stable document rewritten in place (same id: still exists throughout)
            s = store_->upsert("c", {stable[i]});
            break;
          case 2:
            s = store_->remove("c", volatile_docs[i].id);
            if (s.code() == StatusCode::kNotFound) s = Status::ok();
            break;
          default:
            s = store_->upsert("c", {volatile_docs[i]});
        }
        EXPECT_TRUE(s.is_ok()) << s.to_string();
        ++writes;
      }
    });
  }
  for (const json& f : {json::object(), json{{"kind", "s"}}}) {
    const int64_t before = writes;
    // Between pages, the writers get a few writes in (however loaded the machine is).
    auto ids = scroll_all("c", f, 23, [&] {
      const int64_t target = writes + 3;
      for (int i = 0; i < 2000 && writes < target; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    std::map<std::string, int> seen;
    for (const auto& id : ids) seen[id]++;
    for (const auto& [id, times] : seen) EXPECT_EQ(times, 1) << id;
    for (const auto& s : stable) EXPECT_EQ(seen.count(s.id), 1u) << s.id << " missing";
    if (!f.empty()) {
      for (const auto& [id, times] : seen) EXPECT_EQ(id[0], 's') << id;
    }
    EXPECT_GT(writes - before, 100) << "the writers hardly ran during the scroll";
  }
  stop = true;
  for (auto& t : writers) t.join();
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());
}

TEST_F(Documents, DeleteByIdsAndByFilter) {
  const int d = 8, n = 400;
  ASSERT_TRUE(store_->create_collection(spec("c", d, "hnsw")).is_ok());
  std::vector<Document> docs;
  for (int i = 0; i < n; ++i)
    docs.push_back(doc("d" + std::to_string(i), vector_for(std::to_string(i), 0, d), meta_of(i)));
  ASSERT_TRUE(store_->upsert("c", docs).is_ok());
  auto r = store_->remove_documents("c", {"d1", "d2", "d2", "absent", "d3"});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(*r, 3);
  EXPECT_EQ(store_->get("c", "d2", false).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->remove_documents("c", {""}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*store_->count("c", Filter()), n - 3);
  // By filter: exactly the matching documents go.
  Filter f = parse({{"mod", {{"$in", {2, 5}}}}});
  int64_t want = 0;
  for (int i = 4; i < n; ++i) want += (i % 7 == 2 || i % 7 == 5);
  r = store_->remove_matching("c", f);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(*r, want);
  EXPECT_EQ(*store_->count("c", f), 0);
  EXPECT_EQ(*store_->count("c", Filter()), n - 3 - want);
  EXPECT_EQ(*store_->remove_matching("c", f), 0);
  EXPECT_EQ(store_->remove_matching("c", Filter()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->remove_matching("nope", f).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());
  // Search never returns a deleted document and the index agrees after a restart.
  auto hits = store_->search("c", vector_for("2", 0, d), top_k(50));
  ASSERT_TRUE(hits.is_ok());
  for (const auto& h : *hits) {
    const int i = std::stoi(h.id.substr(1));
    EXPECT_TRUE(i > 3 && i % 7 != 2 && i % 7 != 5) << h.id;
  }
  store_.reset();
  store_ = open_store(dir_);
  ASSERT_NE(store_, nullptr);
  EXPECT_EQ(*store_->count("c", Filter()), n - 3 - want);
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());
}

TEST_F(Documents, PatchMergesMetadataAndKeepsTheVectorBitIdentical) {
  const int d = 16;
  ASSERT_TRUE(store_->create_collection(spec("c", d, "flat", Metric::kL2)).is_ok());
  std::vector<float> v = vector_for("p", 0, d);
  v[3] = 1e-38f;  // a denormal-adjacent value and a negative zero survive byte for byte
  v[4] = -0.0f;
  ASSERT_TRUE(
      store_
          ->upsert("c",
                   {doc("p", v, {{"a", 1}, {"b", {{"x", 1}, {"y", 2}}}, {"gone", true}}, "text")})
          .is_ok());
  auto before = store_->get("c", "p", true);
  ASSERT_TRUE(before.is_ok());
  auto patched = store_->patch_metadata(
      "c", "p", {{"a", 2}, {"b", {{"y", nullptr}, {"z", 3}}}, {"gone", nullptr}, {"new", "n"}});
  ASSERT_TRUE(patched.is_ok()) << patched.status().to_string();
  const json want = {{"a", 2}, {"b", {{"x", 1}, {"z", 3}}}, {"new", "n"}};
  EXPECT_EQ(patched->metadata, want);
  auto after = store_->get("c", "p", true);
  ASSERT_TRUE(after.is_ok());
  EXPECT_EQ(after->metadata, want);
  EXPECT_EQ(after->text, "text");
  EXPECT_EQ(after->tokens, before->tokens);
  ASSERT_EQ(after->embedding.size(), before->embedding.size());
  EXPECT_EQ(std::memcmp(after->embedding.data(), before->embedding.data(), d * sizeof(float)), 0);
  // The index still finds it by its (unchanged) vector, and the filter sees the new metadata.
  auto hits = store_->search("c", v, top_k(1, {{"new", "n"}}));
  ASSERT_TRUE(hits.is_ok());
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].id, "p");
  EXPECT_NEAR((*hits)[0].score, 0.0f, 1e-3);
  EXPECT_TRUE(store_->search("c", v, top_k(1, {{"gone", true}}))->empty());
  EXPECT_EQ(store_->patch_metadata("c", "absent", {{"a", 1}}).status().code(),
            StatusCode::kNotFound);
  EXPECT_EQ(store_->patch_metadata("c", "p", json::array()).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->patch_metadata("nope", "p", {{"a", 1}}).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());
}

TEST_F(Documents, DuplicatesOnlyAmongMatchingDocuments) {
  const int d = 8;
  ASSERT_TRUE(store_->create_collection(spec("c", d)).is_ok());
  // Pairs of identical vectors; the pair members share "g", so a filter on g keeps whole pairs.
  std::vector<Document> docs;
  for (int i = 0; i < 10; ++i)
    for (int copy = 0; copy < 2; ++copy)
      docs.push_back(doc("p" + std::to_string(i) + "-" + std::to_string(copy),
                         vector_for("pair", i, d), {{"g", i % 2}}));
  ASSERT_TRUE(store_->upsert("c", docs).is_ok());
  DuplicatesRequest all;
  all.device = "cpu";
  auto r = find_duplicates(*store_, "c", all);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->total_clusters, 10);
  DuplicatesRequest some = all;
  some.filter = parse({{"g", 1}});
  r = find_duplicates(*store_, "c", some);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->documents, 10);
  EXPECT_EQ(r->total_clusters, 5);
  for (const auto& cl : r->clusters)
    for (const auto& id : cl.ids) EXPECT_EQ((std::stoi(id.substr(1)) % 2), 1) << id;
}

}  // namespace
}  // namespace qsearch
