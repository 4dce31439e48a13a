// Collection option "dedup": each new document is checked against the stored ones on
// ingestion; "skip" does not store a duplicate, "flag" stores it marked; both name it.
#include <gtest/gtest.h>

#include <string>

#include "api/server_util.h"

namespace qsearch::testing {
namespace {

class DedupIngest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir();
    server_ = new ServerProcess(dir_->path() + "/data");
    ASSERT_TRUE(server_->start()) << server_->log();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete dir_;
  }
  static ServerProcess& s() { return *server_; }
  static inline ScratchDir* dir_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
};

const char* kText = "Beijing is the capital of China and one of its largest cities.";

TEST_F(DedupIngest, SkipDoesNotStoreTheDuplicate) {
  HttpResult r = s().post("/collections",
                          json{{"name", "skip"}, {"dedup", {{"threshold", 0.9999}, {"action", "skip"}}}});
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.json_body()["options"]["dedup"]["action"], "skip");
  r = s().put("/collections/skip/documents/a", json{{"text", kText}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.json_body().contains("duplicate_of"));
  r = s().put("/collections/skip/documents/b", json{{"text", kText}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["duplicate_of"], "a");
  EXPECT_EQ(r.json_body()["stored"], false);
  EXPECT_EQ(s().get("/collections/skip/documents/b").status, 404);
  EXPECT_EQ(s().get("/collections/skip").json_body()["document_count"], 1);
  // Re-writing the same id is an update, not a duplicate of itself.
  r = s().put("/collections/skip/documents/a", json{{"text", kText}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.json_body().contains("duplicate_of"));
  // A different text is stored; the batch route reports per item.
  r = s().post("/collections/skip/documents",
               json{{"documents", {{{"id", "c"}, {"text", "Completely different words about rivers."}},
                                   {{"id", "d"}, {"text", kText}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_FALSE(r.json_body()["results"][0].contains("duplicate_of"));
  EXPECT_EQ(r.json_body()["results"][1]["duplicate_of"], "a");
  EXPECT_EQ(s().get("/collections/skip/documents/c").status, 200);
  EXPECT_EQ(s().get("/collections/skip/documents/d").status, 404);
}

TEST_F(DedupIngest, FlagStoresAndMarks) {
  ASSERT_EQ(s().post("/collections", json{{"name", "flag"}, {"dedup", {{"threshold", 0.9999}, {"action", "flag"}}}}).status, 201);
  ASSERT_EQ(s().put("/collections/flag/documents/a", json{{"text", kText}}).status, 200);
  HttpResult r = s().put("/collections/flag/documents/b", json{{"text", kText}, {"metadata", {{"k", 1}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["duplicate_of"], "a");
  EXPECT_EQ(r.json_body()["stored"], true);
  json b = s().get("/collections/flag/documents/b").json_body();
  EXPECT_EQ(b["metadata"]["_duplicate_of"], "a");
  EXPECT_EQ(b["metadata"]["k"], 1);
  EXPECT_FALSE(s().get("/collections/flag/documents/a").json_body()["metadata"].contains("_duplicate_of"));
  EXPECT_EQ(s().get("/collections/flag").json_body()["document_count"], 2);
}

TEST_F(DedupIngest, OptionsValidatedAtCreate) {
  auto create = [](json dedup) {
    return s().post("/collections", json{{"name", "bad"}, {"dedup", dedup}}).status;
  };
  EXPECT_EQ(create({{"threshold", 0}}), 422);
  EXPECT_EQ(create({{"threshold", 1.5}}), 422);
  EXPECT_EQ(create({{"action", "delete"}}), 422);
  EXPECT_EQ(create({{"thresh", 0.9}}), 422);
  EXPECT_EQ(create(3), 422);
  EXPECT_EQ(s().post("/collections", json{{"name", "bad"}, {"metric", "l2"}, {"dedup", {{"threshold", 0.9}}}}).status, 422);
  EXPECT_EQ(s().get("/collections/bad").status, 404);
}

}  // namespace
}  // namespace qsearch::testing
