// qsearch serve end to end: readiness, metrics, authentication, routing errors, hostile input,
// start-up failures and graceful shutdown.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <thread>

#include "server_util.h"

namespace qsearch::testing {
namespace {

TEST(Server, HealthAtOnceReadyOnlyOnceLoaded) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {"--debug-load-delay-ms", "1500"});
  ASSERT_TRUE(server.start(/*wait_ready=*/false));
  HttpResult health;
  for (int i = 0; i < 200 && health.status != 200; ++i) {
    health = server.get("/health");
    if (health.status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(health.status, 200) << server.log();
  EXPECT_EQ(health.json_body(), json({{"status", "ok"}}));
  HttpResult ready = server.get("/ready");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.json_body()["error"]["code"], "unavailable");
  HttpResult early = server.post("/v1/embeddings", json{{"input", "x"}});
  EXPECT_EQ(early.status, 503) << early.body;
  EXPECT_EQ(server.metric("qsearch_ready"), 0);
  ASSERT_TRUE(server.wait_ready());
  EXPECT_EQ(server.get("/ready").json_body(), json({{"status", "ready"}}));
  EXPECT_EQ(server.metric("qsearch_ready"), 1);
  EXPECT_EQ(server.stop(), 0);
}

TEST(Server, MetricsInPrometheusFormat) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data");
  ASSERT_TRUE(server.start()) << server.log();
  ASSERT_EQ(server.post("/collections", json{{"name", "m"}, {"dimension", 32}}).status, 201);
  ASSERT_EQ(server.put("/collections/m/documents/a", {{"text", "one two three"}}).status, 200);
  ASSERT_EQ(server.post("/v1/embeddings", json{{"input", {"x", "y"}}}).status, 200);
  ASSERT_EQ(server.post("/v1/embeddings", json{{"input", 1}}).status, 400);
  HttpResult r = server.get("/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.header("Content-Type").find("text/plain"), std::string::npos);
  for (const char* s :
       {"# TYPE qsearch_http_requests_total counter",
        "qsearch_http_requests_total{method=\"POST\",route=\"/v1/embeddings\",status=\"200\"} 1",
        "qsearch_http_requests_total{method=\"POST\",route=\"/v1/embeddings\",status=\"400\"} 1",
        "qsearch_http_requests_total{method=\"PUT\",route=\"/collections/{name}/documents/{id}\",status=\"200\"} 1",
        "# TYPE qsearch_http_request_duration_seconds histogram",
        "qsearch_http_request_duration_seconds_bucket{route=\"/v1/embeddings\",le=\"+Inf\"} 2",
        "# TYPE qsearch_batch_tokens histogram", "qsearch_queue_tokens 0",
        "qsearch_documents{collection=\"m\"} 1",
        "qsearch_index_pending_vectors{collection=\"m\"} 0",
        "qsearch_engine_memory_bytes{backend=\"cpu\",kind=\"weights\"}",
        "qsearch_sequences_embedded_total 3", "qsearch_documents_written_total 1"})
    EXPECT_NE(r.body.find(s), std::string::npos) << s << "\n" << r.body;
  // Tokens embedded: the document and the two inputs, as the engine counted them.
  EXPECT_GT(server.metric("qsearch_tokens_embedded_total"), 5);
  EXPECT_EQ(server.metric("qsearch_tokens_embedded_total"), server.metric("qsearch_batch_tokens_sum"));
  EXPECT_GT(server.metric("qsearch_engine_memory_bytes{backend=\"cpu\",kind=\"weights\"}"), 1e6);
}

TEST(Server, AuthenticationAdminAndReadOnlyKeys) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {},
                       {{"QSEARCH_API_KEY", "admin-secret"}, {"QSEARCH_READ_KEY", "read-secret"}});
  ASSERT_TRUE(server.start()) << server.log();
  const std::string admin = "admin-secret", reader = "read-secret";
  EXPECT_EQ(server.log().find("no API keys configured"), std::string::npos);
  // No auth on /health and /ready.
  EXPECT_EQ(server.get("/health").status, 200);
  EXPECT_EQ(server.get("/ready").status, 200);
  // Missing or wrong key: 401 with WWW-Authenticate.
  HttpResult r = server.get("/collections");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.header("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(r.json_body()["error"]["code"], "unauthorized");
  EXPECT_EQ(server.get("/collections", "wrong").status, 401);
  EXPECT_EQ(server.get("/metrics").status, 401);
  EXPECT_EQ(server.post("/v1/embeddings", json{{"input", "x"}}).status, 401);
  // The read key: GET, search and embeddings, but no writes (403).
  EXPECT_EQ(server.get("/collections", reader).status, 200);
  EXPECT_EQ(server.get("/metrics", reader).status, 200);
  EXPECT_EQ(server.post("/v1/embeddings", json{{"input", "x"}}, reader).status, 200);
  r = server.post("/collections", json{{"name", "c"}, {"dimension", 32}}, reader);
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(r.json_body()["error"]["code"], "forbidden");
  // The admin key: everything.
  ASSERT_EQ(server.post("/collections", json{{"name", "c"}, {"dimension", 32}}, admin).status, 201);
  EXPECT_EQ(server.put("/collections/c/documents/d", {{"text", "t"}}, admin).status, 200);
  EXPECT_EQ(server.put("/collections/c/documents/d", {{"text", "t"}}, reader).status, 403);
  EXPECT_EQ(server.post("/collections/c/import", std::string("{\"id\":\"e\",\"text\":\"t\"}\n"), reader).status, 403);
  EXPECT_EQ(server.del("/collections/c/documents/d", reader).status, 403);
  EXPECT_EQ(server.del("/collections/c", reader).status, 403);
  EXPECT_EQ(server.get("/collections/c/documents/d", reader).status, 200);
  EXPECT_EQ(server.post("/collections/c/search", json{{"query", "t"}}, reader).status, 200);
  EXPECT_EQ(server.del("/collections/c/documents/d", admin).status, 200);
  EXPECT_EQ(server.del("/collections/c", admin).status, 200);
}

TEST(Server, KeyFileAndStartUpWarningWithoutKeys) {
  ScratchDir dir;
  std::string keys = dir.path() + "/keys";
  std::ofstream(keys) << "admin k-admin\nread k-read\n";
  ServerProcess server(dir.path() + "/data", {"--key-file", keys});
  ASSERT_TRUE(server.start()) << server.log();
  EXPECT_EQ(server.get("/collections").status, 401);
  EXPECT_EQ(server.get("/collections", "k-read").status, 200);
  EXPECT_EQ(server.post("/collections", json{{"name", "c"}}, "k-read").status, 403);
  EXPECT_EQ(server.post("/collections", json{{"name", "c"}}, "k-admin").status, 201);
  EXPECT_EQ(server.stop(), 0);

  ServerProcess open_server(dir.path() + "/data2");
  ASSERT_TRUE(open_server.start()) << open_server.log();
  EXPECT_NE(open_server.log().find("no API keys configured"), std::string::npos);
}

TEST(Server, UnknownRoutesMethodsAndPaths) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data");
  ASSERT_TRUE(server.start()) << server.log();
  HttpResult r = server.get("/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json_body()["error"]["code"], "not_found");
  r = server.get("/v1/embeddings");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.json_body()["error"]["code"], "method_not_allowed");
  HttpResult big = server.post("/nope", std::string(1 << 20, 'x'));
  EXPECT_EQ(big.status, 404) << big.body;
  EXPECT_EQ(server.get("/" + std::string(6000, 'a')).status, 414);
  EXPECT_EQ(server.get("/health").status, 200);
}

// Random and mutated bodies on every route: always a JSON answer, never a 5xx, never a crash.
TEST(Server, HostileInputNeverCrashesOrHangs) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data");
  ASSERT_TRUE(server.start()) << server.log();
  ASSERT_EQ(server.post("/collections", json{{"name", "f"}, {"dimension", 32}}).status, 201);
  ASSERT_EQ(server.put("/collections/f/documents/a", {{"text", "seed document"}}).status, 200);
  std::vector<std::string> seeds = {
      R"({"input": ["a", "b"], "dimensions": 32, "encoding_format": "base64"})",
      R"({"query": "x", "k": 5, "filter": {"a": [1, {"b": null}]}, "include": ["text"]})",
      R"({"documents": [{"id": "q", "text": "t", "metadata": {"k": 1.5e300}}]})",
      R"({"name": "g", "dimension": 64, "index": {"type": "ivf", "nlist": -1}})",
      R"({"text": "t", "metadata": {"nested": {"deep": [true, false]}}})",
      R"({"vector": [1e39, -1e39, NaN]})", "\"\\ud800\"", "{\"a\":\"\\u0000\"}"};
  std::vector<std::pair<std::string, std::string>> routes = {
      {"POST", "/v1/embeddings"},         {"POST", "/collections/f/search"},
      {"POST", "/collections/f/documents"}, {"POST", "/collections"},
      {"PUT", "/collections/f/documents/z"}, {"POST", "/collections/f/import"}};
  std::mt19937 rng(1234);
  int responses = 0;
  for (int iter = 0; iter < 300; ++iter) {
    std::string body = seeds[rng() % seeds.size()];
    int edits = 1 + rng() % 4;
    for (int e = 0; e < edits && !body.empty(); ++e) {
      size_t pos = rng() % body.size();
      switch (rng() % 4) {
        case 0: body[pos] = static_cast<char>(rng() % 256); break;
        case 1: body.erase(pos, 1 + rng() % 3); break;
        case 2: body.insert(pos, std::string(1 + rng() % 3, "[{\"]},:0-e\\"[rng() % 11])); break;
        case 3: body = body.substr(0, pos); break;
      }
    }
    const auto& [method, path] = routes[rng() % routes.size()];
    httplib::Client c("127.0.0.1", server.port());
    c.set_read_timeout(30);
    auto res = method == "PUT" ? c.Put(path.c_str(), body, "application/json")
                               : c.Post(path.c_str(), body, "application/json");
    ASSERT_TRUE(res) << "no answer to " << method << " " << path << " " << body;
    EXPECT_LT(res->status, 500) << method << " " << path << " " << body << " -> " << res->body;
    EXPECT_FALSE(json::parse(res->body, nullptr, false).is_discarded()) << res->body;
    ++responses;
  }
  EXPECT_EQ(responses, 300);
  EXPECT_EQ(server.get("/health").status, 200);
  EXPECT_TRUE(server.running());
}

TEST(Server, StartUpFailuresExplainThemselves) {
  ScratchDir dir;
  // A missing model: exit code 1 and how to get one.
  std::string cmd = "timeout 60 " + std::string(QSEARCH_BINARY) + " serve --model " + dir.path() +
                    "/no-model --data-dir " + dir.path() + "/d 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int rc = pclose(p);
  EXPECT_EQ(WEXITSTATUS(rc), 1) << out;
  EXPECT_NE(out.find("huggingface-cli download Qwen/Qwen3-Embedding-0.6B"), std::string::npos) << out;
  EXPECT_NE(out.find("make run"), std::string::npos) << out;
  // A bad option: exit code 2.
  p = popen(("timeout 60 " + std::string(QSEARCH_BINARY) + " serve --port banana 2>&1").c_str(), "r");
  out.clear();
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  rc = pclose(p);
  EXPECT_EQ(WEXITSTATUS(rc), 2) << out;
  EXPECT_NE(out.find("--port"), std::string::npos) << out;
  // A port already taken: exit code 1, not a hang.
  ServerProcess first(dir.path() + "/a");
  ASSERT_TRUE(first.start()) << first.log();
  p = popen(("timeout 60 " + std::string(QSEARCH_BINARY) + " serve --model " + test_model_dir() +
             " --device cpu --data-dir " + dir.path() + "/b --port " +
             std::to_string(first.port()) + " 2>&1").c_str(), "r");
  out.clear();
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  rc = pclose(p);
  EXPECT_EQ(WEXITSTATUS(rc), 1) << out;
  EXPECT_NE(out.find("cannot listen"), std::string::npos) << out;
}

TEST(Server, GracefulShutdownOnSigtermAndSigint) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data");
  ASSERT_TRUE(server.start()) << server.log();
  ASSERT_EQ(server.post("/collections", json{{"name", "c"}, {"dimension", 32}}).status, 201);
  ASSERT_EQ(server.put("/collections/c/documents/d", {{"text", "t"}}).status, 200);
  EXPECT_EQ(server.stop(), 0) << server.log();
  EXPECT_NE(server.log().find("SIGTERM: shutting down"), std::string::npos) << server.log();
  EXPECT_NE(server.log().find("indexes saved"), std::string::npos) << server.log();

  ServerProcess again(dir.path() + "/data");
  ASSERT_TRUE(again.start()) << again.log();
  EXPECT_EQ(again.get("/collections/c").json_body()["document_count"], 1);
  ::kill(again.pid(), SIGINT);
  EXPECT_EQ(again.wait_exit(60), 0) << again.log();
  EXPECT_NE(again.log().find("SIGINT: shutting down"), std::string::npos);
}

}  // namespace
}  // namespace qsearch::testing
