// Durability: reopen keeps everything and the index agrees with the store; a missing or
// corrupt index file is rebuilt from stored embeddings; a stale one is caught up from the
// change log; background saves happen.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "collections_util.h"
#include "store/keys.h"
#include "store/kv_store.h"

namespace qsearch {
namespace {

using namespace testing_util;
using Origin = RocksCollectionStore::IndexOrigin;

constexpr int kDim = 16;
const char* kTypes[] = {"flat", "hnsw", "ivf"};

// Fills one collection per index type with n docs, replaces some and removes some.
void populate(CollectionStore* s, int n, int version) {
  for (const char* type : kTypes) {
    std::vector<Document> docs;
    for (int i = 0; i < n; ++i) {
      const std::string id = std::string("d").append(std::to_string(i));  // (GCC 12 -Wrestrict bug)
      docs.push_back(doc(id, vector_for(id, version, kDim), {{"i", i}, {"v", version}}, id));
    }
    ASSERT_TRUE(s->upsert(type, docs).is_ok());
    for (int i = 0; i < n; i += 10) {
      ASSERT_TRUE(s->remove(type, std::string("d").append(std::to_string(i))).is_ok());
    }
  }
}

// Search results of a fixed query set, per collection.
std::vector<std::vector<std::string>> snapshot(CollectionStore* s) {
  std::vector<std::vector<std::string>> out;
  for (const char* type : kTypes) {
    for (int t = 0; t < 5; ++t) {
      auto hits = s->search(type, vector_for("q", t, kDim), top_k(10));
      EXPECT_TRUE(hits.is_ok());
      std::vector<std::string> ids;
      for (auto& h : *hits) ids.push_back(h.id);
      out.push_back(ids);
    }
  }
  return out;
}

void expect_consistent(CollectionStore* s) {
  for (const char* type : kTypes) {
    Status st = rocks(s)->check_consistency(type);
    EXPECT_TRUE(st.is_ok()) << type << ": " << st.to_string();
  }
}

class Persistence : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("persist");
    auto s = open_store(dir_);
    for (const char* type : kTypes) ASSERT_TRUE(s->create_collection(spec(type, kDim, type)).is_ok());
    populate(s.get(), 600, 0);
    expect_consistent(s.get());
    before_ = snapshot(s.get());
    counts_ = s->document_counts();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string index_file(CollectionStore* s, const char* name) {
    (void)s;
    // Collection ids count up from 1 in creation order (flat, hnsw, ivf).
    int cid = name == std::string("flat") ? 1 : name == std::string("hnsw") ? 2 : 3;
    return dir_ + "/indexes/" + std::to_string(cid) + ".faiss";
  }
  std::string dir_;
  std::vector<std::vector<std::string>> before_;
  std::vector<std::pair<std::string, int64_t>> counts_;
};

TEST_F(Persistence, ReopenLoadsSavedIndexesWithSameResults) {
  auto s = open_store(dir_);
  for (const char* type : kTypes) {
    EXPECT_EQ(rocks(s.get())->index_origin(type).value(), Origin::kLoaded) << type;
    EXPECT_TRUE(std::filesystem::exists(index_file(s.get(), type)));
  }
  EXPECT_EQ(s->get_collection("ivf")->index_type, "ivf");
  EXPECT_EQ(snapshot(s.get()), before_);
  EXPECT_EQ(s->document_counts(), counts_);
  EXPECT_EQ(s->get_collection("flat")->document_count, 540);
  auto d = s->get("hnsw", "d7", true);
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->metadata["i"], 7);
  EXPECT_EQ(d->embedding.size(), static_cast<size_t>(kDim));
  expect_consistent(s.get());
}

TEST_F(Persistence, MissingOrCorruptIndexFilesAreRebuiltFromEmbeddings) {
  std::filesystem::remove(index_file(nullptr, "flat"));
  {  // flip a byte in the middle of the HNSW file
    std::fstream f(index_file(nullptr, "hnsw"), std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const auto size = static_cast<std::streamoff>(f.tellg());
    f.seekp(size / 2);
    f.put('\x42');
    f.seekp(size / 2 + 1);
    f.put('\x17');
  }
  {  // truncate the IVF file
    std::filesystem::resize_file(index_file(nullptr, "ivf"), 100);
  }
  auto s = open_store(dir_);
  for (const char* type : kTypes) {
    EXPECT_EQ(rocks(s.get())->index_origin(type).value(), Origin::kRebuilt) << type;
  }
  EXPECT_EQ(s->document_counts(), counts_);
  expect_consistent(s.get());
  auto after = snapshot(s.get());
  // Flat is exact; the rebuilt HNSW graph and re-trained IVF lists may differ slightly.
  for (int t = 0; t < 5; ++t) EXPECT_EQ(after[t], before_[t]);
  for (size_t t = 5; t < after.size(); ++t) {
    size_t common = 0;
    for (auto& id : after[t]) common += std::count(before_[t].begin(), before_[t].end(), id);
    EXPECT_GE(common, 8u) << t;
  }
  // The rebuilt indexes are saved at close and load cleanly next time.
  s.reset();
  s = open_store(dir_);
  for (const char* type : kTypes) EXPECT_EQ(rocks(s.get())->index_origin(type).value(), Origin::kLoaded);
}

TEST_F(Persistence, StaleIndexFilesAreCaughtUpFromTheChangeLog) {
  {
    auto s = open_store(dir_);
    rocks(s.get())->set_save_on_close(false);  // as if killed: files stay at the last save
    populate(s.get(), 700, 1);                 // replaces d0..d599, adds d600..d699, removes
    ASSERT_TRUE(s->remove("flat", "d5").is_ok());
    before_ = snapshot(s.get());
    counts_ = s->document_counts();
    expect_consistent(s.get());
  }
  auto s = open_store(dir_);
  for (const char* type : kTypes) {
    EXPECT_EQ(rocks(s.get())->index_origin(type).value(), Origin::kCaughtUp) << type;
  }
  EXPECT_EQ(s->document_counts(), counts_);
  EXPECT_EQ(s->get_collection("flat")->document_count, 700 - 70 - 1);
  EXPECT_EQ(snapshot(s.get()), before_);
  expect_consistent(s.get());
  // Each replaced document is found by its new embedding.
  for (const char* type : kTypes) {
    auto hits = s->search(type, vector_for("d123", 1, kDim), top_k(1));
    ASSERT_TRUE(hits.is_ok());
    ASSERT_EQ(hits->size(), 1u);
    EXPECT_EQ((*hits)[0].id, "d123") << type;
  }
}

TEST_F(Persistence, ReplacedFileWithTrimmedLogIsRebuiltNotTrusted) {
  // Keep a copy of the saved flat file, then save newer state (which trims the log).
  const std::string old_copy = dir_ + "/old.faiss";
  std::filesystem::copy_file(index_file(nullptr, "flat"), old_copy);
  {
    auto s = open_store(dir_);
    populate(s.get(), 650, 2);
    counts_ = s->document_counts();
  }
  std::filesystem::copy_file(old_copy, index_file(nullptr, "flat"),
                             std::filesystem::copy_options::overwrite_existing);
  auto s = open_store(dir_);
  EXPECT_EQ(rocks(s.get())->index_origin("flat").value(), Origin::kRebuilt);
  EXPECT_EQ(s->document_counts(), counts_);
  expect_consistent(s.get());
}

TEST_F(Persistence, BackgroundSaverWritesIndexFiles) {
  auto s = open_store(dir_, /*save_interval_s=*/1);
  auto mtime = [&] { return std::filesystem::last_write_time(index_file(nullptr, "flat")); };
  const auto t0 = mtime();
  ASSERT_TRUE(s->upsert("flat", {doc("new", vector_for("new", 0, kDim))}).is_ok());
  bool saved = false;
  for (int i = 0; i < 60 && !saved; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    saved = mtime() != t0;
  }
  EXPECT_TRUE(saved);
  rocks(s.get())->set_save_on_close(false);
  s.reset();
  s = open_store(dir_);
  EXPECT_EQ(rocks(s.get())->index_origin("flat").value(), Origin::kLoaded);
  EXPECT_TRUE(s->get("flat", "new", false).is_ok());
}

TEST(StoreOpen, RejectsAnotherFormatAndEmptyDir) {
  StoreOptions o;
  EXPECT_EQ(CollectionStore::open(o).status().code(), StatusCode::kInvalidArgument);
  const std::string dir = make_temp_dir("fmt");
  {
    auto kv = store::KvStore::open({dir + "/db", false, true});
    ASSERT_TRUE(kv.is_ok());
    store::WriteBatch b;
    b.put(store::meta_key("format_version"), "99");
    ASSERT_TRUE((*kv)->write(&b).is_ok());
  }
  o.data_dir = dir;
  auto s = CollectionStore::open(o);
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.status().message().find("format 99"), std::string::npos) << s.status().to_string();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace qsearch
