// Writes bound to a collection instance (UpsertOptions::instance), conditional writes
// (UpsertOptions::if_labels) and the model identity of a collection (set_model, the re-embed
// record, the upgrade of an older-formula identity at open).
#include <gtest/gtest.h>

#include <filesystem>

#include "collections_util.h"

namespace qsearch {
namespace {

using namespace testing_util;
using json = nlohmann::json;

constexpr int kDim = 8;

struct Dir {
  std::string path = make_temp_dir("binding");
  ~Dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

TEST(WriteBinding, AWriteBoundToADeletedInstanceWritesNothing) {
  Dir dir;
  auto store = open_store(dir.path);
  ASSERT_TRUE(store->create_collection(spec("c", kDim)).is_ok());
  const uint64_t first = store->get_collection("c")->instance;
  ASSERT_NE(first, 0u);
  UpsertOptions bound;
  bound.instance = first;
  ASSERT_TRUE(store->upsert("c", {doc("a", vector_for("a", 0, kDim))}, bound).is_ok());
  ASSERT_TRUE(store->delete_collection("c").is_ok());
  // Deleted: the bound write is a conflict, not a 404.
  Status s = store->upsert("c", {doc("b", vector_for("b", 0, kDim))}, bound);
  EXPECT_EQ(s.code(), StatusCode::kConflict) << s.to_string();
  // Re-created under the same name: another instance; the bound write still lands nowhere.
  ASSERT_TRUE(store->create_collection(spec("c", kDim)).is_ok());
  EXPECT_NE(store->get_collection("c")->instance, first);
  s = store->upsert("c", {doc("b", vector_for("b", 0, kDim))}, bound);
  EXPECT_EQ(s.code(), StatusCode::kConflict) << s.to_string();
  EXPECT_EQ(*store->count("c", Filter()), 0);
  // An unbound write goes to whatever the name names now.
  ASSERT_TRUE(store->upsert("c", {doc("b", vector_for("b", 0, kDim))}).is_ok());
  EXPECT_EQ(*store->count("c", Filter()), 1);
}

TEST(WriteBinding, ConditionalWritesSkipDocumentsChangedSinceRead) {
  Dir dir;
  auto store = open_store(dir.path);
  ASSERT_TRUE(store->create_collection(spec("c", kDim)).is_ok());
  ASSERT_TRUE(store->upsert("c", {doc("a", vector_for("a", 0, kDim), {{"v", 0}}, "a0"),
                                  doc("b", vector_for("b", 0, kDim), {{"v", 0}}, "b0"),
                                  doc("c", vector_for("c", 0, kDim), {{"v", 0}}, "c0")})
                  .is_ok());
  const int64_t la = store->get("c", "a", false)->label;
  const int64_t lb = store->get("c", "b", false)->label;
  const int64_t lc = store->get("c", "c", false)->label;
  ASSERT_GE(la, 0);
  // Meanwhile: b is rewritten, c deleted.
  ASSERT_TRUE(store->upsert("c", {doc("b", vector_for("b", 1, kDim), {{"v", 1}}, "b1")}).is_ok());
  ASSERT_TRUE(store->remove("c", "c").is_ok());
  UpsertOptions o;
  o.if_labels = {la, lb, lc};
  int64_t written = -1;
  o.written = &written;
  o.reembed_record = std::string("{\"cursor\":\"c\"}");
  Status written_status = store->upsert("c", {doc("a", vector_for("a", 2, kDim), {{"v", 2}}, "a2"),
                                               doc("b", vector_for("b", 2, kDim), {{"v", 2}}, "b2"),
                                               doc("c", vector_for("c", 2, kDim), {{"v", 2}}, "c2")},
                                         o);
  ASSERT_TRUE(written_status.is_ok()) << written_status.to_string();
  EXPECT_EQ(written, 1);
  EXPECT_EQ(store->get("c", "a", false)->text, "a2");
  EXPECT_EQ(store->get("c", "b", false)->text, "b1") << "a newer write is never undone";
  EXPECT_EQ(store->get("c", "c", false).status().code(), StatusCode::kNotFound) << "nor a delete";
  EXPECT_EQ(*store->count("c", Filter()), 2);
  EXPECT_TRUE(rocks(store.get())->check_consistency("c").is_ok());
  // The record went in with the write.
  auto rec = store->reembed_record("c");
  ASSERT_TRUE(rec.is_ok());
  ASSERT_TRUE(rec->has_value());
  EXPECT_EQ(**rec, "{\"cursor\":\"c\"}");
}

TEST(ModelIdentity, SetModelIsDurableAndClearsTheRecord) {
  Dir dir;
  {
    auto store = open_store(dir.path);
    ASSERT_TRUE(store->create_collection(spec("c", kDim)).is_ok());
    const uint64_t instance = store->get_collection("c")->instance;
    EXPECT_EQ(store->get_collection("c")->spec.model, "test-model@1");
    ASSERT_TRUE(store->set_reembed_record("c", instance, std::string("x")).is_ok());
    EXPECT_EQ(store->set_model("c", instance + 1, "other@2").code(), StatusCode::kConflict);
    ASSERT_TRUE(store->set_model("c", instance, "other@2").is_ok());
    EXPECT_EQ(store->get_collection("c")->spec.model, "other@2");
    EXPECT_FALSE(store->reembed_record("c")->has_value());
  }
  auto store = open_store(dir.path);
  EXPECT_EQ(store->get_collection("c")->spec.model, "other@2");
}

TEST(ModelIdentity, OlderFormulaIdentityIsUpgradedAtOpen) {
  Dir dir;
  {
    StoreOptions o;
    o.data_dir = dir.path;
    o.model = "m@0123456789abcdef";  // as written before identities covered the contents
    auto store = CollectionStore::open(o);
    ASSERT_TRUE(store.is_ok());
    ASSERT_TRUE((*store)->create_collection(spec("same", kDim)).is_ok());
    CollectionSpec other = spec("other", kDim);
    other.model = "elsewhere@fedcba9876543210";
    ASSERT_TRUE((*store)->create_collection(other).is_ok());
  }
  for (int round = 0; round < 2; ++round) {  // the second open finds it upgraded already
    StoreOptions o;
    o.data_dir = dir.path;
    o.model = "m@00112233445566778899aabbccddeeff";
    o.legacy_model = "m@0123456789abcdef";
    auto store = CollectionStore::open(o);
    ASSERT_TRUE(store.is_ok());
    EXPECT_EQ((*store)->get_collection("same")->spec.model, o.model);
    EXPECT_EQ((*store)->get_collection("other")->spec.model, "elsewhere@fedcba9876543210");
  }
}

}  // namespace
}  // namespace qsearch
