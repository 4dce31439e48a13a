// The lexical index of a collection (collection_lexical.cc) at the CollectionStore level: words
// inside unsegmented Chinese, Japanese and Thai text, phrases and rare codes, writes and deletes,
// filters, chunked documents (best chunk), "lexical": false, and recovery: loaded, caught up from
// the change log, rebuilt when missing, damaged or ahead of the store.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "collections/collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;
using Origin = RocksCollectionStore::IndexOrigin;
namespace fs = std::filesystem;

constexpr int kDim = 8;

const std::vector<std::pair<std::string, std::string>> kTexts = {
    {"zh", "我们在北京大学学习机器学习和自然语言处理"},
    {"ja", "東京都に住んでいます。今日は良い天気ですね"},
    {"th", "ภาษาไทยเป็นภาษาที่สวยงามและมีประวัติยาวนาน"},
    {"en1", "The quick brown fox jumps over the lazy dog"},
    {"en2", "A brown dog is quick to sleep; the fox is not"},
    {"code", "Shipment of part SKU-4471-XZ delayed until further notice"},
    {"km", "ខ្ញុំស្រឡាញ់ភាសាខ្មែរណាស់"},
};

std::vector<std::string> ids_of(const StatusOr<std::vector<SearchHit>>& hits) {
  std::vector<std::string> out;
  EXPECT_TRUE(hits.is_ok()) << hits.status().to_string();
  if (hits.is_ok())
    for (const SearchHit& h : *hits) out.push_back(h.id);
  return out;
}

class LexicalStore : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("lexical");
    store_ = open_store(dir_);
    ASSERT_TRUE(store_);
    ASSERT_TRUE(store_->create_collection(spec("c", kDim)).is_ok());
    std::vector<Document> docs;
    int i = 0;
    for (const auto& [id, text] : kTexts)
      docs.push_back(doc(id, vector_for(id, 0, kDim), {{"n", i++}}, text));
    ASSERT_TRUE(store_->upsert("c", docs).is_ok());
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }
  std::vector<std::string> find(const std::string& q, int k = 10,
                                nlohmann::json filter = nlohmann::json::object()) {
    return ids_of(store_->search_lexical("c", q, top_k(k, std::move(filter))));
  }
  std::string lexical_file(int cid = 1) const {
    return dir_ + "/lexical/" + std::to_string(cid) + ".sqlite";
  }
  void reopen() {
    store_.reset();
    store_ = open_store(dir_);
    ASSERT_TRUE(store_);
  }
  std::string dir_;
  std::unique_ptr<CollectionStore> store_;
};

TEST_F(LexicalStore, FindsWordsInsideUnsegmentedText) {
  EXPECT_EQ(find("机器学习"), std::vector<std::string>{"zh"});
  EXPECT_EQ(find("自然语言"), std::vector<std::string>{"zh"});
  EXPECT_EQ(find("天気"), std::vector<std::string>{"ja"});
  EXPECT_EQ(find("東京"), std::vector<std::string>{"ja"});
  EXPECT_EQ(find("สวยงาม"), std::vector<std::string>{"th"});
  EXPECT_EQ(find("ประวัติ"), std::vector<std::string>{"th"});
  EXPECT_EQ(find("ស្រឡាញ់"), std::vector<std::string>{"km"});
  EXPECT_TRUE(find("上海").empty());
}

TEST_F(LexicalStore, PhrasesAndRareCodes) {
  EXPECT_EQ(find("sku-4471-xz"), std::vector<std::string>{"code"});
  EXPECT_EQ(find("\"SKU-4471-XZ\""), std::vector<std::string>{"code"});
  // Both English documents hold "quick brown"'s words; only en1 holds the phrase.
  EXPECT_EQ(find("\"quick brown\""), std::vector<std::string>{"en1"});
  EXPECT_EQ(find("\"brown quick\"").size(), 0u);
  auto both = find("quick brown fox");
  EXPECT_EQ(both.size(), 2u);
  // BM25: the rare code outranks a document that only shares common words.
  EXPECT_EQ(find("delayed fox").size(), 3u);
  EXPECT_EQ(find("SKU-4471-XZ fox")[0], "code");
}

TEST_F(LexicalStore, ScoresTextAndFilters) {
  auto hits = store_->search_lexical("c", "fox", top_k(10, {{"n", 4}}, true, true));
  ASSERT_TRUE(hits.is_ok());
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].id, "en2");
  EXPECT_EQ((*hits)[0].text, kTexts[4].second);
  EXPECT_EQ((*hits)[0].metadata["n"], 4);
  EXPECT_GT((*hits)[0].score, 0.0f);
  EXPECT_EQ(find("fox", 1).size(), 1u);
  EXPECT_TRUE(find("fox", 10, {{"n", 0}}).empty());
  EXPECT_TRUE(find("   ").empty());
  EXPECT_EQ(store_->search_lexical("c", "fox", top_k(0)).status().code(),
            StatusCode::kUnprocessable);
  EXPECT_EQ(store_->search_lexical("nope", "fox", top_k(3)).status().code(), StatusCode::kNotFound);
}

TEST_F(LexicalStore, FollowsUpsertsAndDeletes) {
  ASSERT_TRUE(
      store_->upsert("c", {doc("en1", vector_for("en1", 1, kDim), {}, "cats and mice")}).is_ok());
  EXPECT_EQ(find("lazy").size(), 0u);  // the old text is gone
  EXPECT_EQ(find("mice"), std::vector<std::string>{"en1"});
  ASSERT_TRUE(store_->remove("c", "zh").is_ok());
  EXPECT_TRUE(find("机器学习").empty());
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());
}

TEST_F(LexicalStore, FollowsBulkAndFilteredDeletes) {
  auto removed = store_->remove_documents("c", {"zh", "th"});
  ASSERT_TRUE(removed.is_ok()) << removed.status().to_string();
  EXPECT_TRUE(find("机器学习").empty());
  EXPECT_TRUE(find("สวยงาม").empty());
  auto filter = Filter::parse({{"n", 3}});
  ASSERT_TRUE(filter.is_ok());
  auto matching = store_->remove_matching("c", *filter);
  ASSERT_TRUE(matching.is_ok()) << matching.status().to_string();
  EXPECT_EQ(*matching, 1);
  EXPECT_EQ(find("lazy").size(), 0u);  // en1 (n = 3) is gone
  EXPECT_EQ(find("fox"), std::vector<std::string>{"en2"});
  Status st = rocks(store_.get())->check_consistency("c");
  EXPECT_TRUE(st.is_ok()) << st.to_string();
  reopen();
  EXPECT_EQ(*rocks(store_.get())->lexical_origin("c"), Origin::kLoaded);
  EXPECT_EQ(find("fox"), std::vector<std::string>{"en2"});
}

TEST_F(LexicalStore, ChunkedDocumentsByBestChunk) {
  CollectionSpec s = spec("chunked", kDim);
  s.chunking = ChunkingOptions{};
  ASSERT_TRUE(store_->create_collection(s).is_ok());
  Document d = doc("long", {}, {}, "alpha beta gamma. delta epsilon zeta. 机器学习 theta");
  d.chunks = {{0, 17, 5}, {18, 37, 5}, {38, 48, 4}};
  for (int i = 0; i < 3; ++i) {
    auto v = vector_for("long", i, kDim);
    d.embedding.insert(d.embedding.end(), v.begin(), v.end());
  }
  ASSERT_TRUE(store_->upsert("chunked", {d}).is_ok());
  auto hits = store_->search_lexical("chunked", "epsilon", top_k(5, {}, true));
  ASSERT_TRUE(hits.is_ok());
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ((*hits)[0].chunk, 1);
  EXPECT_EQ((*hits)[0].chunk_span.start, 18);
  hits = store_->search_lexical("chunked", "学习 alpha theta", top_k(5));
  ASSERT_TRUE(hits.is_ok());
  ASSERT_EQ(hits->size(), 1u);  // one result per document
  EXPECT_EQ((*hits)[0].chunk, 2);
  EXPECT_TRUE(rocks(store_.get())->check_consistency("chunked").is_ok());
}

TEST_F(LexicalStore, LexicalOff) {
  CollectionSpec s = spec("plain", kDim);
  s.lexical = false;
  ASSERT_TRUE(store_->create_collection(s).is_ok());
  ASSERT_TRUE(store_->upsert("plain", {doc("a", vector_for("a", 0, kDim), {}, "fox")}).is_ok());
  auto r = store_->search_lexical("plain", "fox", top_k(3));
  EXPECT_EQ(r.status().code(), StatusCode::kUnprocessable);
  EXPECT_NE(r.status().message().find("lexical"), std::string::npos);
  EXPECT_FALSE(fs::exists(lexical_file(2)));
  EXPECT_TRUE(rocks(store_.get())->check_consistency("plain").is_ok());
  reopen();
  EXPECT_FALSE(fs::exists(lexical_file(2)));
  EXPECT_EQ(rocks(store_.get())->lexical_origin("plain").status().code(), StatusCode::kNotFound);
  auto info = store_->get_collection("plain");
  ASSERT_TRUE(info.is_ok());
  EXPECT_FALSE(info->spec.lexical);
  EXPECT_EQ(info->spec.options_json()["lexical"], false);
}

TEST_F(LexicalStore, ReopenLoadsAndCatchesUp) {
  reopen();
  EXPECT_EQ(*rocks(store_.get())->lexical_origin("c"), Origin::kLoaded);
  EXPECT_EQ(find("天気"), std::vector<std::string>{"ja"});
  // An older copy of the file is caught up from the change log (no save trims it here).
  store_.reset();
  fs::copy_file(lexical_file(), dir_ + "/old.sqlite");
  store_ = open_store(dir_);
  rocks(store_.get())->set_save_on_close(false);
  ASSERT_TRUE(
      store_->upsert("c", {doc("new", vector_for("new", 0, kDim), {}, "ornithopter")}).is_ok());
  ASSERT_TRUE(store_->remove("c", "ja").is_ok());
  store_.reset();
  LexicalIndex::remove_files(lexical_file());
  fs::copy_file(dir_ + "/old.sqlite", lexical_file());
  store_ = open_store(dir_);
  EXPECT_EQ(*rocks(store_.get())->lexical_origin("c"), Origin::kCaughtUp);
  EXPECT_EQ(find("ornithopter"), std::vector<std::string>{"new"});
  EXPECT_TRUE(find("天気").empty());
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());
}

TEST_F(LexicalStore, RebuiltWhenMissingDamagedOrAhead) {
  store_.reset();
  LexicalIndex::remove_files(lexical_file());
  store_ = open_store(dir_);
  EXPECT_EQ(*rocks(store_.get())->lexical_origin("c"), Origin::kRebuilt);
  EXPECT_EQ(find("สวยงาม"), std::vector<std::string>{"th"});
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());

  store_.reset();
  LexicalIndex::remove_files(lexical_file());
  std::ofstream(lexical_file()) << std::string(8192, 'x');  // not a database
  store_ = open_store(dir_);
  EXPECT_EQ(*rocks(store_.get())->lexical_origin("c"), Origin::kRebuilt);
  EXPECT_EQ(find("sku-4471-xz"), std::vector<std::string>{"code"});

  // Ahead of the store: a file that recorded writes the store no longer has.
  store_.reset();
  {
    auto ahead = LexicalIndex::open(lexical_file(), 1);
    ASSERT_TRUE(ahead.is_ok()) << ahead.status().to_string();
    ASSERT_TRUE((*ahead)->apply({}, {{999999, "phantom words"}}, (*ahead)->sequence() + 5).is_ok());
  }
  store_ = open_store(dir_);
  EXPECT_EQ(*rocks(store_.get())->lexical_origin("c"), Origin::kRebuilt);
  EXPECT_TRUE(find("phantom").empty());
  EXPECT_TRUE(rocks(store_.get())->check_consistency("c").is_ok());

  // A file of another collection is not used.
  store_.reset();
  ASSERT_TRUE(LexicalIndex::create(lexical_file(), 77).is_ok());
  store_ = open_store(dir_);
  EXPECT_EQ(*rocks(store_.get())->lexical_origin("c"), Origin::kRebuilt);
  EXPECT_EQ(find("東京"), std::vector<std::string>{"ja"});
}

TEST_F(LexicalStore, DeleteCollectionRemovesTheFile) {
  ASSERT_TRUE(fs::exists(lexical_file()));
  ASSERT_TRUE(store_->delete_collection("c").is_ok());
  EXPECT_FALSE(fs::exists(lexical_file()));
  // A stale file of no collection is removed at open.
  std::ofstream(dir_ + "/lexical/42.sqlite") << "junk";
  reopen();
  EXPECT_FALSE(fs::exists(dir_ + "/lexical/42.sqlite"));
}

}  // namespace
}  // namespace qsearch
