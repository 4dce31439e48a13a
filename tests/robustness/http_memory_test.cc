// Memory limits of the HTTP front (issue 10, docs/server.md): max_response_bytes (422 saying
// how to narrow or page), max_inflight_bytes (503 + Retry-After instead of allocating),
// /duplicates paged by cursor and bounded in pairs. One `qsearch serve` with small limits:
// 1 MiB responses, 2 MiB in flight, 40 duplicate pairs; 24 documents of ~100 kB in 6 groups of
// 4 identical texts (embedded from their first 64 tokens).
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "api/server_util.h"

namespace qsearch::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int kGroups = 6, kPerGroup = 4;
constexpr size_t kTextBytes = 100000;

int64_t rss_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

class HttpMemory : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string err;
    ASSERT_FALSE(test_model_dir(&err).empty()) << err;
    tmp_ = make_temp_dir("qsearch-memory");
    ASSERT_FALSE(tmp_.empty());
    server_ = new ServerProcess((tmp_ / "data").string(),
                                {"--max-response-bytes", "1048576", "--max-inflight-bytes",
                                 "2097152", "--max-duplicate-pairs", "40"});
    ASSERT_TRUE(server_->start()) << server_->start_error();
    ASSERT_EQ(server_->post("/collections", json{{"name", "mem"}, {"max_tokens", 64}}).status, 201);
    const char* words[] = {"river", "stone", "garden", "planet", "music", "ocean", "paper"};
    for (int g = 0; g < kGroups; ++g) {
      std::string text = "group " + std::to_string(g) + " " + words[g] + " " + words[(g + 3) % 7];
      while (text.size() < kTextBytes) text += " " + std::string(words[(text.size() * 7 + g) % 7]);
      for (int i = 0; i < kPerGroup; ++i) {
        HttpResult r = server_->put(
            "/collections/mem/documents/g" + std::to_string(g) + "-" + std::to_string(i),
            {{"text", text}});
        ASSERT_EQ(r.status, 200) << r.body;
      }
    }
  }
  static void TearDownTestSuite() {
    if (server_) {
      EXPECT_NE(server_->stop(30), -1);
      delete server_;
      server_ = nullptr;
    }
    fs::remove_all(tmp_);
  }
  void TearDown() override {
    ASSERT_TRUE(server_->running()) << server_->log_tail();
    EXPECT_EQ(server_->get("/health").status, 200);
  }
  static HttpResult search(int k, bool text) {
    json body = {{"query", "river stone"}, {"k", k}};
    if (!text) body["include"] = {"metadata"};
    return server_->post("/collections/mem/search", body);
  }
  static std::string message(const HttpResult& r) {
    json j = json::parse(r.body, nullptr, false);
    return j.is_object() && j.contains("error") ? j["error"].value("message", "") : "";
  }

  static ServerProcess* server_;
  static fs::path tmp_;
};

ServerProcess* HttpMemory::server_ = nullptr;
fs::path HttpMemory::tmp_;

TEST_F(HttpMemory, LargeAnswersAreRefusedWithHowToNarrowThem) {
  // 24 texts of 100 kB: 2.4 MB, over the 1 MiB response limit.
  HttpResult r = search(24, true);
  EXPECT_EQ(r.status, 422) << r.body.substr(0, 300);
  EXPECT_NE(message(r).find("max_response_bytes"), std::string::npos) << r.body;
  EXPECT_NE(message(r).find("\"k\""), std::string::npos) << r.body;
  EXPECT_NE(message(r).find("include"), std::string::npos) << r.body;
  // Narrowed as the message says: fewer results, or no texts.
  EXPECT_EQ(search(4, true).status, 200);
  HttpResult ids = search(24, false);
  EXPECT_EQ(ids.status, 200) << ids.body.substr(0, 300);
  EXPECT_EQ(ids.json_body()["results"].size(), 24u);
  // Embeddings: 1000 float vectors of the test model are over 1 MiB; base64 fits.
  json many = {{"input", std::vector<std::string>(1000, "x")}};
  r = server_->post("/v1/embeddings", many);
  EXPECT_EQ(r.status, 422) << r.body.substr(0, 300);
  EXPECT_NE(message(r).find("base64"), std::string::npos) << r.body;
  many["encoding_format"] = "base64";
  r = server_->post("/v1/embeddings", many);
  EXPECT_EQ(r.status, 200) << r.body.substr(0, 300);
}

TEST_F(HttpMemory, InFlightBudgetAnswers503WithRetryAfter) {
  // A body announced over the 2 MiB budget (under max_request_bytes): refused before it is read.
  std::string big = json{{"input", std::string(3 << 20, 'a')}}.dump();
  HttpResult r = server_->request("POST", "/v1/embeddings", big, {}, 30);
  EXPECT_EQ(r.status, 503) << r.body.substr(0, 300);
  EXPECT_EQ(r.header("Retry-After"), "1");
  EXPECT_NE(message(r).find("max_inflight_bytes"), std::string::npos) << r.body;
  // A search whose hits, JSON and text (3 x ~800 kB) do not fit in 2 MiB.
  r = search(8, true);
  EXPECT_EQ(r.status, 503) << r.body.substr(0, 300);
  EXPECT_EQ(r.header("Retry-After"), "1");
  EXPECT_NE(message(r).find("max_inflight_bytes"), std::string::npos) << r.body;
  // Many at once: each is answered (200 or 503 + Retry-After), none fails otherwise, and the
  // server's memory stays flat.
  const int64_t before = rss_of(server_->pid());
  std::atomic<int> ok{0}, busy{0}, other{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 16; ++c)
    clients.emplace_back([&] {
      for (int i = 0; i < 5; ++i) {
        HttpResult s = search(4, true);
        if (s.status == 200)
          ok++;
        else if (s.status == 503 && s.header("Retry-After") == "1")
          busy++;
        else
          other++;
      }
    });
  for (auto& t : clients) t.join();
  const int64_t after = rss_of(server_->pid());
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(ok.load(), 0);
  std::printf("80 searches of ~400 kB answers, 16 at once: %d answered, %d busy; RSS %+.1f MiB\n",
              ok.load(), busy.load(), (after - before) / 1048576.0);
  EXPECT_LT(after - before, 64ll << 20);
}

TEST_F(HttpMemory, DuplicatesArePagedAndBoundedInPairs) {
  std::set<std::string> seen;
  json cursor = nullptr;
  int pages = 0;
  do {
    json body = {{"threshold", 0.9999}, {"limit", 2}};
    if (!cursor.is_null()) body["cursor"] = cursor;
    HttpResult r = server_->post("/collections/mem/duplicates", body);
    ASSERT_EQ(r.status, 200) << r.body;
    json j = r.json_body();
    EXPECT_EQ(j["total_clusters"], kGroups);
    EXPECT_LE(j["clusters"].size(), 2u);
    for (const auto& c : j["clusters"]) {
      EXPECT_EQ(c["ids"].size(), static_cast<size_t>(kPerGroup)) << c.dump();
      std::string first = c["ids"][0];
      EXPECT_TRUE(seen.insert(first.substr(0, first.find('-'))).second) << "cluster repeated";
    }
    cursor = j["next_cursor"];
    ASSERT_LT(++pages, 10);
  } while (!cursor.is_null());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kGroups));
  // Past the end: no clusters, no next cursor.
  HttpResult end =
      server_->post("/collections/mem/duplicates", json{{"threshold", 0.9999}, {"cursor", 100}});
  ASSERT_EQ(end.status, 200) << end.body;
  EXPECT_TRUE(end.json_body()["clusters"].empty());
  EXPECT_TRUE(end.json_body()["next_cursor"].is_null());
  EXPECT_EQ(server_->post("/collections/mem/duplicates", json{{"cursor", -1}}).status, 422);
  EXPECT_EQ(server_->post("/collections/mem/duplicates", json{{"cursor", "a"}}).status, 400);
  // A threshold so low that all 276 pairs qualify: over the 40-pair bound.
  HttpResult low = server_->post("/collections/mem/duplicates", json{{"threshold", 0.01}});
  EXPECT_EQ(low.status, 422) << low.body;
  EXPECT_NE(message(low).find("raise \"threshold\""), std::string::npos) << low.body;
}

}  // namespace
}  // namespace qsearch::testing
