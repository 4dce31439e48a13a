// Collection option "dedup": each new document is checked against the stored ones on
// ingestion; "skip" does not store a duplicate, "flag" stores it marked; both name it.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "api/server_util.h"

namespace qsearch::testing {
namespace {

class DedupIngest : public SharedServerTest {
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
  // The dropped duplicate is counted apart: only c was upserted.
  EXPECT_EQ(r.json_body()["upserted"], 1) << r.body;
  EXPECT_EQ(r.json_body()["duplicates"], 1) << r.body;
  EXPECT_EQ(r.json_body()["failed"], 0);
  EXPECT_EQ(s().get("/collections/skip/documents/c").status, 200);
  EXPECT_EQ(s().get("/collections/skip/documents/d").status, 404);
}

TEST_F(DedupIngest, ImportCountsDuplicatesApartFromUpserted) {
  ASSERT_EQ(s().post("/collections", json{{"name", "skipimp"}, {"dedup", {{"threshold", 0.9999}, {"action", "skip"}}}}).status, 201);
  std::string body;
  for (const char* id : {"a", "b", "c"})
    body += json({{"id", id}, {"text", id == std::string("c") ? "Rivers run to the sea." : kText}}).dump() + "\n";
  HttpResult r = s().post("/collections/skipimp/import", body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["lines"], 3);
  EXPECT_EQ(r.json_body()["upserted"], 2) << r.body;  // a and c; b was dropped as a duplicate
  EXPECT_EQ(r.json_body()["duplicates"], 1) << r.body;
  EXPECT_EQ(s().get("/collections/skipimp").json_body()["document_count"], 2);
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

TEST_F(DedupIngest, DuplicatesWithinOneRequestAreFound) {
  ASSERT_EQ(s().post("/collections", json{{"name", "within"}, {"dedup", {{"threshold", 0.9999}, {"action", "skip"}}}}).status, 201);
  HttpResult r = s().post("/collections/within/documents",
                          json{{"documents", {{{"id", "x1"}, {"text", kText}},
                                              {{"id", "x2"}, {"text", "Rivers flow to the sea."}},
                                              {{"id", "x3"}, {"text", kText}},
                                              {{"id", "x4"}, {"text", kText}}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json results = r.json_body()["results"];
  EXPECT_FALSE(results[0].contains("duplicate_of"));
  EXPECT_FALSE(results[1].contains("duplicate_of"));
  EXPECT_EQ(results[2]["duplicate_of"], "x1");
  EXPECT_EQ(results[2]["stored"], false);
  EXPECT_EQ(results[3]["duplicate_of"], "x1");
  EXPECT_EQ(s().get("/collections/within").json_body()["document_count"], 2);
}

// Concurrent requests carrying the same text under different ids: the check and the write are
// one step, so exactly one copy is stored.
TEST_F(DedupIngest, ConcurrentDuplicatesStoreOneCopy) {
  ASSERT_EQ(s().post("/collections", json{{"name", "race"}, {"dedup", {{"threshold", 0.9999}, {"action", "skip"}}}}).status, 201);
  for (int round = 0; round < 5; ++round) {
    const std::string text = "Round " + std::to_string(round) + ": " + kText;
    std::vector<std::thread> threads;
    std::vector<int> status(6, 0);
    std::vector<bool> stored(6, false);
    for (int t = 0; t < 6; ++t) {
      threads.emplace_back([&, t] {
        HttpResult r = s().put("/collections/race/documents/r" + std::to_string(round) + "-" + std::to_string(t),
                               json{{"text", text}});
        status[t] = r.status;
        stored[t] = r.status == 200 && !r.json_body().contains("duplicate_of");
      });
    }
    for (auto& th : threads) th.join();
    int copies = 0;
    for (int t = 0; t < 6; ++t) {
      EXPECT_EQ(status[t], 200);
      copies += stored[t];
    }
    EXPECT_EQ(copies, 1) << "round " << round;
  }
  EXPECT_EQ(s().get("/collections/race").json_body()["document_count"], 5);
}

}  // namespace
}  // namespace qsearch::testing
