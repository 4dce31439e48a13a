// POST /v1/rerank end to end (server subprocess with --reranker, tiny test models, CPU engine):
// the Cohere/Jina shape, sorting and top_n, documents as strings or {"text"}, instructions,
// the cut of long pairs, errors (400/422, 404 without a reranker), the shared queue's 429, and
// the rerank metrics. Scores must equal `qsearch rerank` on the same pairs. Search "rerank":
// the candidates reordered by /v1/rerank's scores of their texts (best chunk when chunked).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <fstream>
#include <set>
#include <thread>

#include "embed/model/test_model.h"
#include "server_util.h"

namespace qsearch::testing {
namespace {

std::string deps_tokenizer() {
  const char* env = std::getenv("QSEARCH_DEPS_DIR");
  return std::string(env && *env ? env : QSEARCH_DEPS_DIR) + "/qwen3/tokenizer.json";
}

// A tiny test reranker (untied LM head, seed 42) in dir; "" and a test failure on error.
std::string write_reranker(const std::string& dir) {
  TestModelOptions o;
  o.tokenizer_path = deps_tokenizer();
  o.out_dir = dir;
  o.reranker = true;
  o.tied = false;
  auto info = write_test_model(o);
  EXPECT_TRUE(info.is_ok()) << info.status().to_string();
  return info.is_ok() ? dir : "";
}

// `qsearch rerank` on JSON lines; one score per line.
std::vector<double> cli_scores(const std::string& model, const std::string& dir,
                               const std::vector<json>& lines) {
  std::ofstream(dir + "/in.jsonl") << [&] {
    std::string s;
    for (const auto& l : lines) s += l.dump() + "\n";
    return s;
  }();
  std::string cmd = std::string(QSEARCH_BINARY) + " rerank --device cpu --model " + model + " < " +
                    dir + "/in.jsonl > " + dir + "/out.txt 2> " + dir + "/err.txt";
  int status = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << cmd;
  std::vector<double> out;
  std::ifstream in(dir + "/out.txt");
  for (double v; in >> v;) out.push_back(v);
  return out;
}

class Rerank : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir();
    model_ = write_reranker(dir_->path() + "/reranker");
    ASSERT_FALSE(model_.empty());
    // Pairs over 512 tokens are cut (the default 8192 would make the cut test slow on a CPU).
    server_ = new ServerProcess(dir_->path() + "/data",
                                {"--reranker", model_, "--max-tokens-per-text", "512"});
    ASSERT_TRUE(server_->start()) << server_->start_error() << "\n" << server_->log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  static ServerProcess& s() { return *server_; }
  static json rerank(const json& body, int expect_status = 200) {
    HttpResult r = s().post("/v1/rerank", body);
    EXPECT_EQ(r.status, expect_status) << r.body;
    return r.json_body();
  }
  static inline ScratchDir* dir_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  static inline std::string model_;
};

const std::vector<std::string> kDocs = {
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other.",
    "北京是中华人民共和国的首都。",
    "Paris is the capital of France.",
    "",
    "Rerankers read the query and a document together.",
};

TEST_F(Rerank, CohereShapeSortedAndEqualToTheCli) {
  json r = rerank(
      {{"model", "my-reranker"}, {"query", "What is the capital of China?"}, {"documents", kDocs}});
  ASSERT_TRUE(r.contains("results"));
  EXPECT_EQ(r["model"], "my-reranker");
  ASSERT_EQ(r["results"].size(), kDocs.size());
  EXPECT_GT(r["usage"]["total_tokens"].get<int64_t>(), 80 * static_cast<int64_t>(kDocs.size()));
  std::vector<json> lines;
  for (const auto& d : kDocs)
    lines.push_back({{"query", "What is the capital of China?"}, {"document", d}});
  std::vector<double> cli = cli_scores(model_, dir_->path(), lines);
  ASSERT_EQ(cli.size(), kDocs.size());
  std::vector<bool> seen(kDocs.size(), false);
  double previous = 2;
  for (const auto& item : r["results"]) {
    size_t index = item["index"].get<size_t>();
    ASSERT_LT(index, kDocs.size());
    EXPECT_FALSE(seen[index]);
    seen[index] = true;
    double score = item["relevance_score"].get<double>();
    EXPECT_GT(score, 0.0);
    EXPECT_LT(score, 1.0);
    EXPECT_LE(score, previous) << "results are sorted by score";
    previous = score;
    EXPECT_NEAR(score, cli[index], 1e-6) << "document " << index;
    EXPECT_FALSE(item.contains("document")) << "return_documents defaults to false";
    EXPECT_FALSE(item.contains("truncated_tokens"));
  }
  // The model name defaults to the reranker's directory name.
  json unnamed = rerank({{"query", "q"}, {"documents", {"d"}}});
  EXPECT_EQ(unnamed["model"], "reranker");
}

TEST_F(Rerank, TopNReturnDocumentsAndObjectDocuments) {
  json docs = json::array();
  for (const auto& d : kDocs) docs.push_back({{"text", d}});
  json all = rerank({{"query", "capital cities"}, {"documents", docs}, {"return_documents", true}});
  json top = rerank({{"query", "capital cities"}, {"documents", kDocs}, {"top_n", 2}});
  ASSERT_EQ(all["results"].size(), kDocs.size());
  ASSERT_EQ(top["results"].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(top["results"][i]["index"], all["results"][i]["index"]);
    EXPECT_EQ(top["results"][i]["relevance_score"], all["results"][i]["relevance_score"]);
  }
  for (const auto& item : all["results"])
    EXPECT_EQ(item["document"]["text"], kDocs[item["index"].get<size_t>()]);
  // Every pair is scored whatever top_n, so usage is the same.
  EXPECT_EQ(top["usage"]["total_tokens"], all["usage"]["total_tokens"]);
}

TEST_F(Rerank, InstructionDefaultsToTheModelCards) {
  auto score_of = [](const json& r) { return r["results"][0]["relevance_score"].get<double>(); };
  const json base = {{"query", "q"}, {"documents", {"a document"}}};
  json by_default = rerank(base);
  json explicit_default = base;
  explicit_default["instruction"] =
      "Given a web search query, retrieve relevant passages that answer the query";
  json other = base;
  other["instruction"] = "Judge whether the document is written in English";
  EXPECT_EQ(score_of(rerank(explicit_default)), score_of(by_default));
  EXPECT_NE(score_of(rerank(other)), score_of(by_default));
  auto cli = cli_scores(
      model_, dir_->path(),
      {{{"query", "q"}, {"document", "a document"}, {"instruction", other["instruction"]}}});
  ASSERT_EQ(cli.size(), 1u);
  EXPECT_NEAR(score_of(rerank(other)), cli[0], 1e-6);
}

TEST_F(Rerank, LongPairsAreCutAndSaySo) {
  std::string doc;
  for (int i = 0; i < 300; ++i) doc += "token" + std::to_string(i) + " ";
  json r = rerank({{"query", "q"}, {"documents", {doc, "short"}}});
  ASSERT_EQ(r["results"].size(), 2u);
  for (const auto& item : r["results"]) {
    if (item["index"] == 0) {
      EXPECT_GT(item["truncated_tokens"].get<int>(), 0);
    } else {
      EXPECT_FALSE(item.contains("truncated_tokens"));
    }
  }
  EXPECT_LE(r["usage"]["total_tokens"].get<int64_t>(), 512 + 100);
  // The cut pair scores as `qsearch rerank --max-tokens 512` scores it.
  std::ofstream(dir_->path() + "/long.jsonl")
      << json{{"query", "q"}, {"document", doc}}.dump() << "\n";
  std::string cmd = std::string(QSEARCH_BINARY) + " rerank --device cpu --max-tokens 512 --model " +
                    model_ + " < " + dir_->path() + "/long.jsonl > " + dir_->path() +
                    "/long.out 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream in(dir_->path() + "/long.out");
  std::string line;
  double cli = -1;
  while (std::getline(in, line))
    if (!line.empty() && line[0] == '0') cli = std::stod(line);
  for (const auto& item : r["results"])
    if (item["index"] == 0) EXPECT_NEAR(item["relevance_score"].get<double>(), cli, 1e-6);
}

TEST(RerankTruncation, OffRefusesLongPairsWith422) {
  ScratchDir dir;
  std::string model = write_reranker(dir.path() + "/reranker");
  ASSERT_FALSE(model.empty());
  ServerProcess server(dir.path() + "/data", {"--reranker", model, "--truncate", "false",
                                              "--max-tokens-per-text", "256"});
  ASSERT_TRUE(server.start()) << server.log();
  std::string doc;
  for (int i = 0; i < 300; ++i) doc += "token" + std::to_string(i) + " ";
  HttpResult r = server.post("/v1/rerank", json{{"query", "q"}, {"documents", {"short", doc}}});
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_NE(r.body.find("document 1"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("truncation is off"), std::string::npos) << r.body;
  EXPECT_EQ(server.post("/v1/rerank", json{{"query", "q"}, {"documents", {"short"}}}).status, 200);
}

TEST_F(Rerank, Errors) {
  auto expect_error = [](const json& body, int status, const std::string& code,
                         const std::string& words) {
    HttpResult r = s().post("/v1/rerank", body);
    EXPECT_EQ(r.status, status) << body.dump() << " -> " << r.body;
    json j = r.json_body();
    EXPECT_EQ(j["error"]["code"], code) << r.body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(words), std::string::npos) << r.body;
  };
  expect_error({{"query", "q"}, {"documents", json::array()}}, 422, "unprocessable", "empty");
  expect_error({{"query", "q"}, {"documents", {"a", "b"}}, {"top_n", 0}}, 422, "unprocessable",
               "top_n");
  expect_error({{"query", "q"}, {"documents", {"a", "b"}}, {"top_n", 3}}, 422, "unprocessable",
               "1..2");
  expect_error({{"documents", {"a"}}}, 400, "invalid_request", "query");
  expect_error({{"query", "q"}}, 400, "invalid_request", "documents");
  expect_error({{"query", "q"}, {"documents", "a"}}, 400, "invalid_request", "array");
  expect_error({{"query", "q"}, {"documents", json::array({json{{"txt", "a"}}})}}, 400,
               "invalid_request", "text");
  expect_error({{"query", "q"}, {"documents", {1}}}, 400, "invalid_request", "documents[0]");
  expect_error({{"query", "q"}, {"documents", {"a"}}, {"top_n", "1"}}, 400, "invalid_request",
               "top_n");
  expect_error({{"query", 5}, {"documents", {"a"}}}, 400, "invalid_request", "query");
  expect_error({{"query", "q"}, {"documents", std::vector<std::string>(1001, "d")}}, 422,
               "unprocessable", "1000");
  HttpResult bad_json = s().post("/v1/rerank", std::string("{\"query\": "));
  EXPECT_EQ(bad_json.status, 400);
}

TEST_F(Rerank, Metrics) {
  const double pairs = s().metric("qsearch_rerank_pairs_total");
  const double requests = s().metric("qsearch_rerank_requests_total{source=\"rerank\"}");
  rerank({{"query", "q"}, {"documents", {"a", "b", "c"}}});
  EXPECT_EQ(s().metric("qsearch_rerank_pairs_total"), pairs + 3);
  EXPECT_EQ(s().metric("qsearch_rerank_requests_total{source=\"rerank\"}"), requests + 1);
  EXPECT_GT(s().metric("qsearch_rerank_tokens_total"), 0);
  EXPECT_GT(s().metric("qsearch_batches_total{backend=\"cpu\",task=\"rerank\"}"), 0);
  EXPECT_GT(s().metric("qsearch_reranker_memory_bytes{backend=\"cpu\",kind=\"weights\"}"), 1e6);
  EXPECT_GE(s().metric("qsearch_http_requests_total{method=\"POST\",route=\"/v1/rerank\","
                       "status=\"200\"}"),
            1);
  // Embeddings still work beside the reranker, and their counter excludes reranker tokens.
  const double embedded = s().metric("qsearch_tokens_embedded_total");
  HttpResult e = s().post("/v1/embeddings", json{{"input", "hello"}});
  EXPECT_EQ(e.status, 200) << e.body;
  EXPECT_GT(s().metric("qsearch_tokens_embedded_total"), embedded);
}

// Search "rerank": the first top_n vector candidates are scored against the query and the best
// k returned by rerank_score, each equal to /v1/rerank's score of the same text.
TEST_F(Rerank, SearchRerankReordersTheCandidates) {
  // (max_tokens within the suite server's --max-tokens-per-text 512)
  HttpResult made = s().post("/collections", json{{"name", "kb"}, {"max_tokens", 512}});
  ASSERT_EQ(made.status, 201) << made.body;
  json docs = json::array();
  for (size_t i = 0; i < kDocs.size(); ++i)
    docs.push_back({{"id", "d" + std::to_string(i)}, {"text", kDocs[i].empty() ? "-" : kDocs[i]}});
  for (int i = 0; i < 4; ++i)
    docs.push_back(
        {{"id", "x" + std::to_string(i)}, {"text", "filler text number " + std::to_string(i)}});
  HttpResult up = s().post("/collections/kb/documents", json{{"documents", docs}});
  ASSERT_EQ(up.status, 200) << up.body;
  const std::string query = "What is the capital of China?";
  HttpResult plain = s().post("/collections/kb/search", json{{"query", query}, {"k", 6}});
  ASSERT_EQ(plain.status, 200) << plain.body;
  std::vector<std::string> texts, ids;
  const json plain_body = plain.json_body();
  for (const auto& h : plain_body["results"]) {
    texts.push_back(h["text"]);
    ids.push_back(h["id"]);
    EXPECT_FALSE(h.contains("rerank_score"));
  }
  ASSERT_EQ(texts.size(), 6u) << up.body << "\n" << plain.body;
  json want = rerank({{"query", query}, {"documents", texts}, {"top_n", 3}});

  const double before = s().metric("qsearch_rerank_requests_total{source=\"search\"}");
  HttpResult r = s().post(
      "/collections/kb/search",
      json{{"query", query}, {"k", 3}, {"rerank", {{"top_n", 6}}}, {"include", json::array()}});
  ASSERT_EQ(r.status, 200) << r.body;
  json got = r.json_body()["results"];
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i]["id"], ids[want["results"][i]["index"].get<size_t>()]) << i;
    EXPECT_NEAR(got[i]["rerank_score"].get<double>(),
                want["results"][i]["relevance_score"].get<double>(), 1e-6);
    EXPECT_TRUE(got[i].contains("score"));  // the vector score stays
    EXPECT_FALSE(got[i].contains("text"));  // "include": [] is honoured
  }
  EXPECT_EQ(s().metric("qsearch_rerank_requests_total{source=\"search\"}"), before + 1);

  // An instruction changes the scores; top_n defaults to max(50, k) (all 10 documents here).
  HttpResult custom =
      s().post("/collections/kb/search",
               json{{"query", query},
                    {"k", 10},
                    {"rerank", {{"instruction", "Judge whether it is about physics"}}}});
  ASSERT_EQ(custom.status, 200) << custom.body;
  const json custom_body = custom.json_body();
  EXPECT_EQ(custom_body["results"].size(), 10u);
  double prev = 2;
  for (const auto& h : custom_body["results"]) {
    EXPECT_LE(h["rerank_score"].get<double>(), prev);
    prev = h["rerank_score"].get<double>();
  }

  auto expect_status = [&](const json& body, int status, const std::string& words) {
    HttpResult e = s().post("/collections/kb/search", body);
    EXPECT_EQ(e.status, status) << body.dump() << " -> " << e.body;
    EXPECT_NE(e.body.find(words), std::string::npos) << e.body;
  };
  expect_status({{"id", "d0"}, {"rerank", json::object()}}, 422, "needs a text");
  expect_status({{"query", "q"}, {"k", 5}, {"rerank", {{"top_n", 4}}}}, 422, "top_n");
  expect_status({{"query", "q"}, {"rerank", {{"top_n", 1001}}}}, 422, "top_n");
  expect_status({{"query", "q"}, {"rerank", {{"topn", 4}}}}, 400, "topn");
  expect_status({{"query", "q"}, {"rerank", 5}}, 400, "rerank");
  ASSERT_EQ(s().del("/collections/kb").status, 200);
}

// A chunked document is reranked by its best chunk's text.
TEST_F(Rerank, SearchRerankUsesTheBestChunk) {
  HttpResult c = s().post("/collections", json{{"name", "chunked"},
                                               {"max_tokens", 512},
                                               {"chunking", {{"max_tokens", 24}, {"overlap", 0}}}});
  ASSERT_EQ(c.status, 201) << c.body;
  std::string text;
  for (int i = 0; i < 12; ++i)
    text += "Sentence " + std::to_string(i) + " is about rivers and cities. ";
  ASSERT_EQ(s().put("/collections/chunked/documents/long", json{{"text", text}}).status, 200);
  HttpResult r = s().post("/collections/chunked/search",
                          json{{"query", "rivers"}, {"k", 1}, {"rerank", {{"top_n", 1}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  json hit = r.json_body()["results"][0];
  ASSERT_TRUE(hit.contains("chunk")) << hit.dump();
  std::string chunk_text = hit["chunk"]["text"];
  EXPECT_LT(chunk_text.size(), text.size());
  json want = rerank({{"query", "rivers"}, {"documents", {chunk_text}}});
  EXPECT_NEAR(hit["rerank_score"].get<double>(),
              want["results"][0]["relevance_score"].get<double>(), 1e-6);
  ASSERT_EQ(s().del("/collections/chunked").status, 200);
}

// Lexical and hybrid search rerank the candidates of their own mode: with "mode": "lexical"
// only documents holding the query's words are candidates, reordered by /v1/rerank's scores.
TEST_F(Rerank, SearchRerankTakesTheCandidatesOfTheMode) {
  HttpResult made = s().post("/collections", json{{"name", "kbl"}, {"max_tokens", 512}});
  ASSERT_EQ(made.status, 201) << made.body;
  json docs = json::array();
  for (size_t i = 0; i < kDocs.size(); ++i)
    docs.push_back({{"id", "d" + std::to_string(i)}, {"text", kDocs[i].empty() ? "-" : kDocs[i]}});
  ASSERT_EQ(s().post("/collections/kbl/documents", json{{"documents", docs}}).status, 200);
  const std::string query = "capital";  // in d0 and d3 only
  HttpResult r = s().post("/collections/kbl/search", json{{"query", query},
                                                          {"mode", "lexical"},
                                                          {"k", 2},
                                                          {"rerank", {{"top_n", 5}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  json got = r.json_body()["results"];
  ASSERT_EQ(got.size(), 2u) << r.body;
  std::set<std::string> ids = {got[0]["id"], got[1]["id"]};
  EXPECT_EQ(ids, (std::set<std::string>{"d0", "d3"}));
  json want = rerank({{"query", query}, {"documents", {kDocs[0], kDocs[3]}}});
  for (const auto& w : want["results"]) {
    const std::string id = w["index"] == 0 ? "d0" : "d3";
    const json& hit = got[0]["id"] == id ? got[0] : got[1];
    EXPECT_NEAR(hit["rerank_score"].get<double>(), w["relevance_score"].get<double>(), 1e-6);
    EXPECT_FALSE(hit["highlights"].empty());
  }
  EXPECT_GE(got[0]["rerank_score"].get<double>(), got[1]["rerank_score"].get<double>());
  // Hybrid: the reranked window is the fused list's first top_n; offset pages after reranking.
  r = s().post("/collections/kbl/search",
               json{{"query", query}, {"mode", "hybrid"}, {"k", 3}, {"rerank", {{"top_n", 6}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  json all = r.json_body()["results"];
  ASSERT_EQ(all.size(), 3u);
  r = s().post("/collections/kbl/search", json{{"query", query},
                                               {"mode", "hybrid"},
                                               {"k", 2},
                                               {"offset", 1},
                                               {"rerank", {{"top_n", 6}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  json page = r.json_body()["results"];
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0]["id"], all[1]["id"]);
  EXPECT_EQ(page[1]["id"], all[2]["id"]);
  HttpResult bad = s().post("/collections/kbl/search", json{{"query", query},
                                                            {"mode", "lexical"},
                                                            {"k", 5},
                                                            {"offset", 5},
                                                            {"rerank", {{"top_n", 6}}}});
  EXPECT_EQ(bad.status, 422) << bad.body;  // top_n < k + offset
  ASSERT_EQ(s().del("/collections/kbl").status, 200);
}

TEST(RerankWithout, NoRerankerAnswers404) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data");
  ASSERT_TRUE(server.start()) << server.log();
  HttpResult r = server.post("/v1/rerank", json{{"query", "q"}, {"documents", {"a"}}});
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(r.json_body()["error"]["code"], "not_found");
  EXPECT_NE(r.body.find("no reranker is loaded"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("--reranker"), std::string::npos) << r.body;
  // and so does a search asking for "rerank", before embedding anything
  ASSERT_EQ(server.post("/collections", json{{"name", "c"}}).status, 201);
  HttpResult search =
      server.post("/collections/c/search", json{{"query", "q"}, {"rerank", json::object()}});
  EXPECT_EQ(search.status, 404) << search.body;
  EXPECT_NE(search.body.find("no reranker is loaded"), std::string::npos) << search.body;
}

TEST(RerankWithout, BadRerankerDirectoryFailsTheStart) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {"--reranker", dir.path() + "/missing"});
  EXPECT_FALSE(server.start());
  EXPECT_NE(server.log().find("Qwen3-Reranker"), std::string::npos) << server.log_tail();
}

TEST(RerankLoad, SharesTheQueueWithEmbeddingsAnd429s) {
  ScratchDir dir;
  std::string model = write_reranker(dir.path() + "/reranker");
  ASSERT_FALSE(model.empty());
  // Each batch is held 800 ms; the queue holds 120 tokens; one pair is 75 tokens.
  ServerProcess server(dir.path() + "/data", {"--reranker", model, "--debug-batch-delay-ms", "800",
                                              "--queue-limit-tokens", "120"});
  ASSERT_TRUE(server.start()) << server.log();
  auto send = [&] { return server.post("/v1/rerank", json{{"query", "q"}, {"documents", {"d"}}}); };
  HttpResult first, second;
  std::thread a([&] { first = send(); });  // taken by the engine, held
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  std::thread b([&] { second = send(); });  // queued: 75 tokens
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  HttpResult third = send();  // 75 + 75 > 120: refused
  EXPECT_EQ(third.status, 429) << third.body;
  EXPECT_EQ(third.json_body()["error"]["code"], "overloaded");
  EXPECT_FALSE(third.header("Retry-After").empty());
  // An embedding request meets the same queue.
  std::string words;
  for (int i = 0; i < 50; ++i) words += "word ";
  HttpResult embed = server.post("/v1/embeddings", json{{"input", words}});
  EXPECT_EQ(embed.status, 429) << embed.body;
  a.join();
  b.join();
  EXPECT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(server.metric("qsearch_rejected_requests_total"), 2);
  EXPECT_EQ(send().status, 200);  // room again
}

}  // namespace
}  // namespace qsearch::testing
