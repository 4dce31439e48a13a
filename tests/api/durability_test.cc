// Durability and load: restart keeps everything without re-embedding, kill -9 during ingestion
// loses no acknowledged document, concurrent clients, a full queue answers 429, and work of a
// client that disconnected is dropped.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <set>
#include <signal.h>
#include <thread>

#include "server_util.h"

namespace qsearch::testing {
namespace {

json search(const ServerProcess& s, const std::string& c, json body) {
  HttpResult r = s.post("/collections/" + c + "/search", body);
  EXPECT_EQ(r.status, 200) << r.body;
  return r.json_body();
}

TEST(Durability, RestartKeepsEverythingWithoutReembedding) {
  ScratchDir dir;
  const std::string data = dir.path() + "/data";
  json before_query, before_id, before_filter, flat_info, hnsw_info;
  {
    ServerProcess server(data);
    ASSERT_TRUE(server.start()) << server.log();
    ASSERT_EQ(server.post("/collections", json{{"name", "flat"}, {"dimension", 64}}).status, 201);
    ASSERT_EQ(server.post("/collections", json{{"name", "hnsw"}, {"dimension", 32}, {"metric", "ip"},
                                               {"index", {{"type", "hnsw"}}}}).status, 201);
    std::string body;
    for (int i = 0; i < 200; ++i)
      body += json({{"id", "d" + std::to_string(i)}, {"text", "restart document " + std::to_string(i)},
                    {"metadata", {{"mod", i % 5}}}}).dump() + "\n";
    ASSERT_EQ(server.post("/collections/flat/import", body, "", 120).status, 200);
    ASSERT_EQ(server.post("/collections/hnsw/import", body, "", 120).status, 200);
    ASSERT_EQ(server.del("/collections/flat/documents/d7").status, 200);
    ASSERT_EQ(server.put("/collections/flat/documents/d8", {{"text", "updated eight"}}).status, 200);
    before_query = search(server, "flat", {{"query", "document 42"}, {"k", 10}});
    before_id = search(server, "hnsw", {{"id", "d3"}, {"k", 10}});
    before_filter = search(server, "flat", {{"id", "d1"}, {"k", 20}, {"filter", {{"mod", 2}}}});
    flat_info = server.get("/collections/flat").json_body();
    hnsw_info = server.get("/collections/hnsw").json_body();
    EXPECT_EQ(flat_info["document_count"], 199);
    EXPECT_EQ(server.stop(), 0) << server.log();
  }
  ServerProcess server(data);
  ASSERT_TRUE(server.start()) << server.log();
  EXPECT_EQ(server.metric("qsearch_tokens_embedded_total"), 0);  // nothing re-embedded
  EXPECT_EQ(server.get("/collections/flat").json_body(), flat_info);
  EXPECT_EQ(server.get("/collections/hnsw").json_body(), hnsw_info);
  EXPECT_EQ(search(server, "hnsw", {{"id", "d3"}, {"k", 10}})["results"], before_id["results"]);
  EXPECT_EQ(search(server, "flat", {{"id", "d1"}, {"k", 20}, {"filter", {{"mod", 2}}}})["results"],
            before_filter["results"]);
  EXPECT_EQ(server.metric("qsearch_tokens_embedded_total"), 0);  // search by id embeds nothing
  EXPECT_EQ(search(server, "flat", {{"query", "document 42"}, {"k", 10}})["results"], before_query["results"]);
  EXPECT_EQ(server.get("/collections/flat/documents/d7").status, 404);
  EXPECT_EQ(server.get("/collections/flat/documents/d8").json_body()["text"], "updated eight");
  // Only the query was embedded.
  double query_tokens = server.metric("qsearch_tokens_embedded_total");
  EXPECT_GT(query_tokens, 0);
  EXPECT_LT(query_tokens, 40);
}

TEST(Durability, KillNineDuringIngestionLosesNoAcknowledgedDocument) {
  ScratchDir dir;
  const std::string data = dir.path() + "/data";
  std::mutex mu;
  std::vector<std::string> acked;
  {
    ServerProcess server(data);
    ASSERT_TRUE(server.start()) << server.log();
    ASSERT_EQ(server.post("/collections", json{{"name", "k"}, {"dimension", 32}}).status, 201);
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < 3; ++w) {
      writers.emplace_back([&, w] {
        for (int i = 0; !stop; ++i) {
          std::string id = "w" + std::to_string(w) + "-" + std::to_string(i);
          HttpResult r;
          if (w == 2) {  // batches of four
            json docs = json::array();
            for (int j = 0; j < 4; ++j)
              docs.push_back({{"id", id + "-" + std::to_string(j)}, {"text", "batch " + id}});
            r = server.post("/collections/k/documents", json{{"documents", docs}});
            if (r.status == 200) {
              std::lock_guard<std::mutex> lock(mu);
              json body = r.json_body();
              for (const auto& item : body["results"])
                if (!item.contains("error")) acked.push_back(item["id"]);
            }
          } else {
            r = server.put("/collections/k/documents/" + id, {{"text", "kill nine " + id}});
            if (r.status == 200) {
              std::lock_guard<std::mutex> lock(mu);
              acked.push_back(id);
            }
          }
          if (r.status == 0) return;  // the server is gone
        }
      });
    }
    // Let some writes land, then kill -9 in the middle of the stream.
    for (int i = 0; i < 600; ++i) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (acked.size() >= 150) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    server.kill9();
    stop = true;
    for (auto& t : writers) t.join();
  }
  ASSERT_GE(acked.size(), 20u);
  ServerProcess server(data);
  ASSERT_TRUE(server.start()) << server.log();
  json info = server.get("/collections/k").json_body();
  EXPECT_GE(info["document_count"].get<int64_t>(), static_cast<int64_t>(acked.size()));
  EXPECT_EQ(info["index_size"], info["document_count"]) << info;  // the index agrees with the store
  for (const auto& id : acked) {
    HttpResult r = server.get("/collections/k/documents/" + id + "?include=embedding");
    ASSERT_EQ(r.status, 200) << "acknowledged document " << id << " was lost";
    // The index finds each document by its own vector.
    json hits = search(server, "k", {{"vector", r.json_body()["embedding"]}, {"k", 5}, {"include", json::array()}});
    bool found = false;
    for (const auto& h : hits["results"]) found |= h["id"] == id;
    EXPECT_TRUE(found) << id << " is stored but not in the index";
  }
}

TEST(Durability, ShutdownDuringAnImportKeepsWhatItReported) {
  ScratchDir dir;
  const std::string data = dir.path() + "/data";
  json summary;
  {
    ServerProcess server(data, {"--shutdown-timeout", "1", "--debug-batch-delay-ms", "100"});
    ASSERT_TRUE(server.start()) << server.log();
    ASSERT_EQ(server.post("/collections", json{{"name", "i"}, {"dimension", 32}}).status, 201);
    std::string body;
    for (int i = 0; i < 5000; ++i)  // about 250 KB: fits the socket buffers, so the client
      body += json({{"id", "s" + std::to_string(i)}, {"text", "shutdown import " + std::to_string(i)}}).dump() + "\n";
    HttpResult result;
    // has sent everything and reads the answer even though the server stops reading early.
    std::thread importer([&] { result = server.post("/collections/i/import", body, "", 120); });
    for (int i = 0; i < 500 && server.metric("qsearch_documents_written_total") < 256; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ::kill(server.pid(), SIGTERM);
    EXPECT_EQ(server.wait_exit(60), 0) << server.log();
    importer.join();
    ASSERT_EQ(result.status, 503) << result.body;
    summary = result.json_body()["import"];
    EXPECT_GT(summary["upserted"].get<int>(), 0);
    EXPECT_LT(summary["upserted"].get<int>(), 5000);
  }
  ServerProcess server(data);
  ASSERT_TRUE(server.start()) << server.log();
  int64_t upserted = summary["upserted"].get<int64_t>();
  EXPECT_EQ(server.get("/collections/i").json_body()["document_count"], upserted);
  // Documents are imported in order: the reported prefix is there, the next one is not.
  EXPECT_EQ(server.get("/collections/i/documents/s" + std::to_string(upserted - 1)).status, 200);
  EXPECT_EQ(server.get("/collections/i/documents/s" + std::to_string(upserted)).status, 404);
}

TEST(Load, ConcurrentClientsGetConsistentAnswers) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data");
  ASSERT_TRUE(server.start()) << server.log();
  ASSERT_EQ(server.post("/collections", json{{"name", "c"}, {"dimension", 32}}).status, 201);
  auto reference = server.post("/v1/embeddings", json{{"input", "shared query"}}).json_body()["data"][0]["embedding"];
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 12; ++i) {
        std::string id = "t" + std::to_string(t) + "-" + std::to_string(i);
        if (server.put("/collections/c/documents/" + id, {{"text", "concurrent " + id}}).status != 200) ++failures;
        HttpResult e = server.post("/v1/embeddings", json{{"input", {"shared query", id}}});
        if (e.status != 200) {
          ++failures;
          continue;
        }
        // Batched with other clients' work, the same text still gets the same vector.
        auto v = e.json_body()["data"][0]["embedding"];
        for (size_t j = 0; j < v.size(); ++j)
          if (std::abs(v[j].get<double>() - reference[j].get<double>()) > 1e-5) {
            ++failures;
            break;
          }
        if (server.post("/collections/c/search", json{{"query", id}, {"k", 3}}).status != 200) ++failures;
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(server.get("/collections/c").json_body()["document_count"], 96);
  EXPECT_EQ(server.metric("qsearch_queue_tokens"), 0);
}

TEST(Load, FullQueueAnswers429WithRetryAfter) {
  ScratchDir dir;
  // Each batch is held 800 ms; the queue holds 40 tokens.
  ServerProcess server(dir.path() + "/data", {"--debug-batch-delay-ms", "800", "--queue-limit-tokens", "40"});
  ASSERT_TRUE(server.start()) << server.log();
  std::string words;
  for (int i = 0; i < 25; ++i) words += "word ";
  auto send = [&] { return server.post("/v1/embeddings", json{{"input", words}}); };
  HttpResult first, second;
  std::thread a([&] { first = send(); });    // taken by the engine, held
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  std::thread b([&] { second = send(); });   // queued: about 26 tokens
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  HttpResult third = send();                 // 26 + 26 > 40: refused
  EXPECT_EQ(third.status, 429) << third.body;
  EXPECT_EQ(third.json_body()["error"]["code"], "overloaded");
  EXPECT_FALSE(third.header("Retry-After").empty());
  EXPECT_GE(std::stoi(third.header("Retry-After")), 1);
  a.join();
  b.join();
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(second.status, 200);
  EXPECT_EQ(server.metric("qsearch_rejected_requests_total"), 1);
  EXPECT_EQ(send().status, 200);  // room again
}

TEST(Load, WorkOfADisconnectedClientIsDropped) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {"--debug-batch-delay-ms", "1500"});
  ASSERT_TRUE(server.start()) << server.log();
  HttpResult first;
  std::thread a([&] { first = server.post("/v1/embeddings", json{{"input", "keeps the engine busy"}}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // This client gives up after one second, while its three texts are still queued.
  HttpResult gone = server.post("/v1/embeddings", json{{"input", {"one", "two", "three"}}}.dump(), "", 1);
  EXPECT_EQ(gone.status, 0);
  a.join();
  EXPECT_EQ(first.status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(server.metric("qsearch_dropped_sequences_total"), 3);
  EXPECT_EQ(server.metric("qsearch_sequences_embedded_total"), 1);  // only the first request
  EXPECT_EQ(server.metric("qsearch_queue_sequences"), 0);
}

}  // namespace
}  // namespace qsearch::testing
