// Operability end to end: GET /info, GET /v1/models, `qsearch --version`, build and process
// metrics, info-level logs of collections, imports and index saves/rebuilds, and the progress
// of long work at GET /jobs and in GET /collections/{name} while it runs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "server_util.h"

namespace qsearch::testing {
namespace {

std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

class Info : public SharedServerTest {};

TEST_F(Info, VersionFlagMatchesInfoAndBuildInfoMetric) {
  std::string out = run_command(std::string(QSEARCH_BINARY) + " --version");
  ASSERT_EQ(out.rfind("qsearch ", 0), 0u) << out;
  HttpResult r = s().get("/info");
  ASSERT_EQ(r.status, 200) << r.body;
  json j = r.json_body();
  const std::string version = j["version"], commit = j["commit"];
  EXPECT_FALSE(version.empty());
  EXPECT_FALSE(commit.empty());
  EXPECT_EQ(out, "qsearch " + version + " (commit " + commit + ", " +
                     j["build_type"].get<std::string>() + " build, " +
                     (j["cuda"].get<bool>() ? "CUDA engine" : "no CUDA engine") + ")\n");
  EXPECT_EQ(s().metric("qsearch_build_info{version=\"" + version + "\",commit=\"" + commit + "\"}"),
            1);
}

TEST_F(Info, ModelDimensionsDevicesAndLimits) {
  json j = s().get("/info").json_body();
  EXPECT_EQ(j["name"], "qsearch");
  EXPECT_EQ(j["ready"], true);
  EXPECT_EQ(j["auth"], false);
  EXPECT_GT(j["uptime_s"].get<double>(), 0);
  EXPECT_NEAR(j["started_at"].get<double>(), unix_now(), 600);
  const json& m = j["model"];
  ASSERT_TRUE(m.is_object()) << j.dump(2);
  EXPECT_EQ(m["id"], "test-model");
  const std::string identity = m["identity"], digest = m["digest"];
  EXPECT_EQ(identity, "test-model@" + digest);
  EXPECT_EQ(digest.size(), 32u);  // XXH3-128 over config.json and the weights
  EXPECT_EQ(digest.find_first_not_of("0123456789abcdef"), std::string::npos) << digest;
  const int hidden = m["hidden_size"];
  EXPECT_GT(hidden, 0);
  EXPECT_EQ(m["dimensions"]["max"], hidden);
  EXPECT_EQ(m["dimensions"]["min"], std::min(32, hidden));
  EXPECT_EQ(m["devices"], json::array({"cpu"}));
  EXPECT_EQ(m["dtype"], "float32");
  EXPECT_EQ(m["engine"], "cpu");
  EXPECT_GT(m["max_tokens"].get<int>(), 0);
  EXPECT_LE(m["max_tokens"].get<int>(), 8192);
  EXPECT_GT(m["layers"].get<int>(), 0);
  EXPECT_TRUE(j["reranker"].is_null());
  const json& l = j["limits"];
  EXPECT_EQ(l["max_request_bytes"], 33554432);
  EXPECT_EQ(l["max_tokens_per_text"], m["max_tokens"]);
  EXPECT_EQ(l["truncate"], true);
  EXPECT_EQ(l["queue_limit_tokens"], 262144);
  EXPECT_EQ(l["max_k"], 1000);
  EXPECT_EQ(l["max_embedding_inputs"], 2048);
  EXPECT_EQ(l["max_id_bytes"], 512);
  EXPECT_GT(l["max_batch_tokens"].get<int>(), 0);
  // The dimension limits are the ones /v1/embeddings enforces.
  const int min_dim = m["dimensions"]["min"];
  EXPECT_EQ(s().post("/v1/embeddings", json{{"input", "x"}, {"dimensions", min_dim}}).status, 200);
  EXPECT_EQ(s().post("/v1/embeddings", json{{"input", "x"}, {"dimensions", hidden + 1}}).status,
            422);
}

TEST_F(Info, OpenAiModelList) {
  HttpResult r = s().get("/v1/models");
  ASSERT_EQ(r.status, 200) << r.body;
  json j = r.json_body();
  EXPECT_EQ(j["object"], "list");
  ASSERT_EQ(j["data"].size(), 1u) << j.dump();
  const json& m = j["data"][0];
  EXPECT_EQ(m["id"], "test-model");
  EXPECT_EQ(m["object"], "model");
  EXPECT_EQ(m["owned_by"], "qsearch");
  EXPECT_EQ(m["type"], "embedding");
  EXPECT_NEAR(m["created"].get<double>(), unix_now(), 600);
  EXPECT_EQ(s().get("/v1/models/test-model").json_body(), m);
  HttpResult missing = s().get("/v1/models/gpt-4");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.json_body()["error"]["code"], "not_found");
  // The id it lists is the one /v1/embeddings echoes.
  EXPECT_EQ(s().post("/v1/embeddings", json{{"input", "x"}}).json_body()["model"], "test-model");
}

TEST_F(Info, ProcessMetrics) {
  HttpResult r = s().get("/metrics");
  ASSERT_EQ(r.status, 200);
  for (const char* line :
       {"# TYPE process_resident_memory_bytes gauge", "# TYPE process_open_fds gauge",
        "# TYPE process_start_time_seconds gauge", "# TYPE process_cpu_seconds_total counter",
        "# TYPE qsearch_build_info gauge"})
    EXPECT_NE(r.body.find(line), std::string::npos) << line;
  EXPECT_GT(s().metric("process_resident_memory_bytes"), 1e6);
  EXPECT_GE(s().metric("process_virtual_memory_bytes"),
            s().metric("process_resident_memory_bytes"));
  const double fds = s().metric("process_open_fds");
  EXPECT_GT(fds, 3);
  EXPECT_LT(fds, s().metric("process_max_fds"));
  EXPECT_NEAR(s().metric("process_start_time_seconds"), unix_now(), 600);
  EXPECT_LE(s().metric("process_start_time_seconds"), unix_now() + 1);
  EXPECT_GT(s().metric("process_cpu_seconds_total"), 0);
}

TEST_F(Info, JobsRoutesOnUnknownIds) {
  HttpResult list = s().get("/jobs");
  ASSERT_EQ(list.status, 200);
  EXPECT_TRUE(list.json_body()["jobs"].is_array());
  for (const char* id :
       {"/jobs/999999", "/jobs/abc", "/jobs/-1", "/jobs/99999999999999999999999"}) {
    HttpResult r = s().get(id);
    EXPECT_EQ(r.status, 404) << id;
    EXPECT_EQ(r.json_body()["error"]["code"], "not_found") << id;
  }
}

TEST(InfoAuth, NeedsAReadKeyAndAnswersBeforeTheModelLoads) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {"--debug-load-delay-ms", "1500"},
                       {{"QSEARCH_API_KEY", "admin-k"}, {"QSEARCH_READ_KEY", "read-k"}});
  ASSERT_TRUE(server.start(/*wait_ready=*/false)) << server.start_error();
  EXPECT_EQ(server.get("/info").status, 401);
  HttpResult early = server.get("/info", "read-k");
  ASSERT_EQ(early.status, 200) << early.body;
  EXPECT_EQ(early.json_body()["ready"], false);
  EXPECT_EQ(early.json_body()["auth"], true);
  EXPECT_TRUE(early.json_body()["model"].is_null());
  EXPECT_EQ(server.get("/v1/models", "read-k").status, 503);
  EXPECT_EQ(server.get("/jobs", "read-k").status, 200);
  ASSERT_TRUE(server.wait_ready());
  EXPECT_EQ(server.get("/v1/models", "read-k").status, 200);
  EXPECT_EQ(server.get("/info", "read-k").json_body()["ready"], true);
}

std::string ndjson(int n, int bad_every) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    if (bad_every > 0 && i % bad_every == bad_every - 1) {
      out += "{not json}\n";
      continue;
    }
    out += json({{"id", "d" + std::to_string(i)},
                 {"text", "progress document number " + std::to_string(i) + " of the import"}})
               .dump() +
           "\n";
  }
  return out;
}

// An import slowed down by small batches and a per-batch delay: its job is visible while it
// runs (GET /jobs, GET /jobs/{id}, GET /collections/{name}), progress lines are logged, and
// the finished job keeps its counts.
TEST(Jobs, ImportProgressWhileItRunsAndLogs) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {"--debug-batch-delay-ms", "60", "--max-batch-tokens",
                                              "256", "--progress-interval", "1"});
  ASSERT_TRUE(server.start()) << server.start_error();
  ASSERT_EQ(server.post("/collections", json{{"name", "imp"}, {"dimension", 32}}).status, 201);
  const std::string body = ndjson(1000, 250);  // 4 bad lines
  HttpResult result;
  std::thread client([&] { result = server.post("/collections/imp/import", body, "", 300); });

  json seen;  // the import's job while it runs, with documents done
  json in_collection;
  for (int i = 0; i < 1500 && seen.is_null(); ++i) {
    json jobs = server.get("/jobs").json_body()["jobs"];
    for (const auto& j : jobs)
      if (j["kind"] == "import" && j["state"] == "running" && j["done"].get<int>() > 0) seen = j;
    if (!seen.is_null())
      in_collection = server.get("/collections/imp").json_body()["jobs"];
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  client.join();
  ASSERT_FALSE(seen.is_null()) << "no running import with progress seen\n" << server.log_tail();
  EXPECT_EQ(seen["collection"], "imp");
  EXPECT_LT(seen["done"].get<int>(), 996);
  EXPECT_GT(seen["bytes"].get<int64_t>(), 0);
  EXPECT_EQ(seen["total_bytes"], body.size());
  EXPECT_TRUE(seen["total"].is_null());
  EXPECT_GE(seen["rate"].get<double>(), 0);
  ASSERT_EQ(in_collection.size(), 1u) << in_collection.dump();
  EXPECT_EQ(in_collection[0]["id"], seen["id"]);

  ASSERT_EQ(result.status, 200) << result.body;
  EXPECT_EQ(result.json_body()["upserted"], 996);
  const std::string id = std::to_string(seen["id"].get<int>());
  json done = server.get("/jobs/" + id).json_body();
  EXPECT_EQ(done["state"], "done") << done.dump();
  EXPECT_EQ(done["done"], 996);
  EXPECT_EQ(done["errors"], 4);
  EXPECT_EQ(done["bytes"], body.size());
  EXPECT_GE(done["finished_at"].get<double>(), done["started_at"].get<double>());
  EXPECT_GT(done["rate"].get<double>(), 0);
  EXPECT_TRUE(server.get("/collections/imp").json_body()["jobs"].empty());

  std::string log = server.log();
  EXPECT_NE(log.find("created collection 'imp' (dimension 32"), std::string::npos) << log;
  EXPECT_NE(log.find("import into 'imp' (job " + id + ") started, " + std::to_string(body.size()) +
                     " bytes announced"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("import into 'imp' (job " + id + "): "), std::string::npos)
      << "no progress line\n"
      << log;
  EXPECT_NE(log.find("documents/s"), std::string::npos) << log;
  EXPECT_NE(log.find("import into 'imp' (job " + id +
                     ") finished: 996 documents upserted, 4 failed, 1000 lines"),
            std::string::npos)
      << log;

  ASSERT_EQ(server.del("/collections/imp").status, 200);
  EXPECT_NE(server.log().find("deleted collection 'imp' (996 documents)"), std::string::npos);
}

// A collection whose index file is gone is rebuilt from the stored embeddings at start: the
// rebuild is logged and listed as a finished job; index saves are logged.
TEST(Jobs, IndexRebuildAtStartIsAJobAndSavesAreLogged) {
  ScratchDir dir;
  const std::string data = dir.path() + "/data";
  {
    ServerProcess server(data);
    ASSERT_TRUE(server.start()) << server.start_error();
    ASSERT_EQ(server.post("/collections", json{{"name", "rb"}, {"dimension", 32}}).status, 201);
    ASSERT_EQ(server.post("/collections/rb/import", ndjson(120, 0), "", 120).status, 200);
    EXPECT_EQ(server.stop(), 0);
    EXPECT_NE(server.log().find("store: collection 'rb': saved the index (120 vectors"),
              std::string::npos)
        << server.log();
  }
  size_t removed = 0;
  for (const auto& e : std::filesystem::directory_iterator(data + "/indexes"))
    removed += std::filesystem::remove(e.path()) ? 1 : 0;
  ASSERT_GT(removed, 0u);
  ServerProcess server(data);
  ASSERT_TRUE(server.start()) << server.start_error();
  std::string log = server.log();
  EXPECT_NE(log.find("store: collection 'rb': rebuilding the flat index from 120 stored documents"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("store: collection 'rb': rebuilt the index of 120 vectors"), std::string::npos)
      << log;
  json rebuild;
  const json jobs = server.get("/jobs").json_body()["jobs"];
  for (const auto& j : jobs)
    if (j["kind"] == "index_rebuild") rebuild = j;
  ASSERT_FALSE(rebuild.is_null()) << server.get("/jobs").body;
  EXPECT_EQ(rebuild["collection"], "rb");
  EXPECT_EQ(rebuild["state"], "done");
  EXPECT_EQ(rebuild["done"], 120);
  EXPECT_EQ(rebuild["total"], 120);
  EXPECT_EQ(server.get("/collections/rb").json_body()["document_count"], 120);
}

}  // namespace
}  // namespace qsearch::testing
