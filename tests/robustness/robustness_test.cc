// Bad input across the HTTP API (issue 5): each kind of bad request gets the documented error
// ({"error": {"code", "message"}} with the status of the mapping in src/api/errors.h) and the
// server keeps serving: after every case, /health answers and a real search still works.
// One `qsearch serve` subprocess (test model, CPU engine) for the whole suite, started with a
// 1 MiB request limit and 16 HTTP threads so the limits are cheap to reach.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/server_util.h"

namespace qsearch::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kMaxRequestBytes = 1 << 20;
constexpr int kHttpThreads = 16;

class Robustness : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string err;
    ASSERT_FALSE(test_model_dir(&err).empty()) << err;
    tmp_ = make_temp_dir("qsearch-robust");
    ASSERT_FALSE(tmp_.empty());
    server_ = new ServerProcess((tmp_ / "data").string(),
                                {"--max-request-bytes", std::to_string(kMaxRequestBytes),
                                 "--http-threads", std::to_string(kHttpThreads)});
    ASSERT_TRUE(server_->start()) << server_->start_error();
    HttpResult c = server_->request("POST", "/collections", R"({"name": "robust"})");
    ASSERT_EQ(c.status, 201) << c.body;
    json info = json::parse(c.body, nullptr, false);
    dimension_ = info.value("dimension", 0);
    ASSERT_GT(dimension_, 0) << c.body;
    for (int i = 0; i < 8; ++i) {
      HttpResult r = server_->request(
          "PUT", "/collections/robust/documents/doc" + std::to_string(i),
          json{{"text", "robustness document number " + std::to_string(i)},
               {"metadata", {{"i", i}}}}.dump());
      ASSERT_EQ(r.status, 200) << r.body;
    }
  }
  static void TearDownTestSuite() {
    if (server_) {
      EXPECT_NE(server_->stop(30), -1) << "server did not shut down on SIGTERM";
      delete server_;
      server_ = nullptr;
    }
    fs::remove_all(tmp_);
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    ASSERT_TRUE(server_->running()) << "server died earlier:\n" << server_->log_tail();
  }

  // After every case: the process lives, /health is fast, a search embeds and answers.
  void TearDown() override {
    ASSERT_TRUE(server_->running()) << "server died:\n" << server_->log_tail();
    auto t0 = Clock::now();
    HttpResult h = server_->request("GET", "/health", "", {}, 10);
    EXPECT_EQ(h.status, 200) << h.error;
    HttpResult s = server_->request("POST", "/collections/robust/search",
                                    R"({"query": "robustness document", "k": 3})", {}, 30);
    EXPECT_EQ(s.status, 200) << s.body << s.error;
    json j = json::parse(s.body, nullptr, false);
    EXPECT_TRUE(j.contains("results") && j["results"].size() == 3) << s.body;
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_LT(secs, 10.0) << "server slow to answer after the case";
  }

  static HttpResult req(const std::string& method, const std::string& path,
                        const std::string& body = "", const std::vector<std::string>& h = {}) {
    return server_->request(method, path, body, h, 60);
  }

  // The documented error: status and {"error": {"code": string, "message": non-empty string}}.
  static void expect_error(const HttpResult& r, int status, const std::string& what) {
    EXPECT_EQ(r.status, status) << what << ": " << r.error << " " << r.body.substr(0, 400);
    json j = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error") && j["error"].is_object())
        << what << ": error body is not {\"error\": {...}}: " << r.body.substr(0, 400);
    EXPECT_TRUE(j["error"].contains("code") && j["error"]["code"].is_string()) << what << ": " << r.body;
    EXPECT_TRUE(j["error"].contains("message") && j["error"]["message"].is_string() &&
                !j["error"]["message"].get<std::string>().empty())
        << what << ": " << r.body;
  }

  static std::vector<float> unit_vector(int n) {
    std::vector<float> v(static_cast<size_t>(n), 0.f);
    if (n) v[0] = 1.f;
    return v;
  }

  static ServerProcess* server_;
  static fs::path tmp_;
  static int dimension_;
};

ServerProcess* Robustness::server_ = nullptr;
fs::path Robustness::tmp_;
int Robustness::dimension_ = 0;

// ---- oversized bodies -------------------------------------------------------------------

TEST_F(Robustness, OversizedBodiesGet413) {
  std::string big(kMaxRequestBytes + 1024, 'a');
  expect_error(req("PUT", "/collections/robust/documents/big", json{{"text", big}}.dump()), 413,
               "2 MiB document");
  expect_error(req("POST", "/v1/embeddings", json{{"input", big}}.dump()), 413, "oversized embeddings");
  expect_error(req("POST", "/collections/robust/search", json{{"query", big}}.dump()), 413,
               "oversized search");
  // The document must not have been written.
  expect_error(req("GET", "/collections/robust/documents/big"), 404, "oversized document stored");
}

TEST_F(Robustness, HugeContentLengthIsRefusedBeforeTheBody) {
  // Claims 10 GB and sends nothing more: the server must answer 413 from the header alone.
  int fd = connect_loopback(server_->port(), 10);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           "Content-Length: 10000000000\r\nConnection: close\r\n\r\n{\"input\": \""));
  auto t0 = Clock::now();
  HttpResult r = read_response(fd);
  ::close(fd);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 8.0);
  expect_error(r, 413, "Content-Length 10 GB");
}

// ---- invalid UTF-8 ----------------------------------------------------------------------

TEST_F(Robustness, InvalidUtf8Gets400) {
  const std::string bad[] = {"abc\xff" "def", "\xc3\x28", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                             "\xe2\x82", "\xc0\xaf"};
  for (const auto& b : bad) {
    std::string text_field = "\"" + b + "\"";
    expect_error(req("POST", "/v1/embeddings", "{\"input\": " + text_field + "}"), 400,
                 "invalid UTF-8 in embeddings input");
    expect_error(req("PUT", "/collections/robust/documents/utf8", "{\"text\": " + text_field + "}"),
                 400, "invalid UTF-8 in document text");
    expect_error(req("POST", "/collections/robust/search", "{\"query\": " + text_field + "}"), 400,
                 "invalid UTF-8 in query");
    expect_error(req("PUT", "/collections/robust/documents/utf8",
                     "{\"text\": \"ok\", \"metadata\": {\"k\": " + text_field + "}}"),
                 400, "invalid UTF-8 in metadata");
  }
  // An escaped lone surrogate is not a character either.
  expect_error(req("POST", "/v1/embeddings", R"({"input": "\ud800"})"), 400, "lone surrogate escape");
  // Invalid UTF-8 in an id from the path.
  expect_error(req("PUT", "/collections/robust/documents/%FF%FE", R"({"text": "x"})"), 400,
               "invalid UTF-8 in a path id");
  expect_error(req("GET", "/collections/robust/documents/utf8"), 404, "invalid document stored");
}

// ---- malformed JSON and wrong types -------------------------------------------------------

TEST_F(Robustness, MalformedJsonGets400WithPosition) {
  HttpResult r = req("POST", "/v1/embeddings", "{\"input\": [\"a\", ]}");
  expect_error(r, 400, "trailing comma");
  json j = json::parse(r.body, nullptr, false);
  std::string msg = j.is_object() ? j["error"].value("message", "") : "";
  EXPECT_TRUE(msg.find("line") != std::string::npos || msg.find("column") != std::string::npos ||
              msg.find("byte") != std::string::npos || msg.find("position") != std::string::npos)
      << "no position in: " << msg;
  const std::vector<std::string> malformed = {
      "", "{", "nul", "{\"input\": \"a\"} trailing", "\"just a string\"", "[1, 2, 3]",
      "{\"input\": 'single'}", std::string("{\"input\":\0\"a\"}", 15)};
  for (const std::string& body : malformed)
    expect_error(req("POST", "/v1/embeddings", body), 400, "malformed body: " + body);
  expect_error(req("POST", "/collections", "{\"name\": "), 400, "truncated collection body");
  expect_error(req("POST", "/collections/robust/documents", "not json"), 400, "batch not json");
}

TEST_F(Robustness, WrongTypesGet400) {
  struct Case { const char* method; std::string path; std::string body; };
  const std::vector<Case> cases = {
      {"POST", "/v1/embeddings", R"({"input": 5})"},
      {"POST", "/v1/embeddings", R"({"input": {"text": "a"}})"},
      {"POST", "/v1/embeddings", R"({"input": ["a", 3]})"},
      {"POST", "/v1/embeddings", R"({"input": [[1, 2], "a"]})"},
      {"POST", "/v1/embeddings", R"({"input": [1, "a"]})"},
      {"POST", "/v1/embeddings", R"({"input": [1.5, 2]})"},
      {"POST", "/v1/embeddings", R"({"input": "a", "dimensions": "64"})"},
      {"POST", "/v1/embeddings", R"({"input": "a", "encoding_format": 1})"},
      {"POST", "/v1/embeddings", R"({"input": "a", "model": ["x"]})"},
      {"POST", "/v1/embeddings", R"({"input": null})"},
      {"POST", "/v1/embeddings", R"({})"},
      {"POST", "/collections", R"({"name": 5})"},
      {"POST", "/collections", R"({"name": "t1", "dimension": "64"})"},
      {"POST", "/collections", R"({"name": "t2", "index": "flat"})"},
      {"POST", "/collections", R"({"name": "t3", "max_tokens": true})"},
      {"PUT", "/collections/robust/documents/x", R"({"text": 5})"},
      {"PUT", "/collections/robust/documents/x", R"({"text": "a", "metadata": [1]})"},
      {"PUT", "/collections/robust/documents/x", R"({"text": "a", "metadata": "m"})"},
      {"PUT", "/collections/robust/documents/x", R"({})"},
      {"POST", "/collections/robust/documents", R"({"documents": {"id": "a"}})"},
      {"POST", "/collections/robust/documents", R"({"documents": "a"})"},
      {"POST", "/collections/robust/search", R"({"query": 5})"},
      {"POST", "/collections/robust/search", R"({"query": "a", "k": "10"})"},
      {"POST", "/collections/robust/search", R"({"query": "a", "k": 2.5})"},
      {"POST", "/collections/robust/search", R"({"query": "a", "filter": [1]})"},
      {"POST", "/collections/robust/search", R"({"query": "a", "include": "text"})"},
      {"POST", "/collections/robust/search", R"({"vector": "1,2,3"})"},
      {"POST", "/collections/robust/search", R"({"vector": [1, "a"]})"},
      {"POST", "/collections/robust/search", R"({})"},
  };
  for (const auto& c : cases) expect_error(req(c.method, c.path, c.body), 400, std::string(c.method) + " " + c.path + " " + c.body);
  expect_error(req("GET", "/collections/x"), 404, "no side effect of a rejected create");
}

// ---- deep JSON --------------------------------------------------------------------------

TEST_F(Robustness, DeepJsonGets400Quickly) {
  const int depth = 100000;
  std::vector<std::string> bodies = {
      std::string(depth, '[') + std::string(depth, ']'),
      "{\"input\": " + std::string(depth, '[') + std::string(depth, ']') + "}",
      [&] { std::string s; for (int i = 0; i < depth; ++i) s += "{\"a\":"; s += "1"; s += std::string(depth, '}'); return s; }(),
      std::string(depth, '['),  // unterminated
  };
  for (const auto& body : bodies) {
    auto t0 = Clock::now();
    expect_error(req("POST", "/v1/embeddings", body), 400, "deep JSON");
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 5.0);
  }
  std::string meta = std::string(depth, '[') + std::string(depth, ']');
  expect_error(req("PUT", "/collections/robust/documents/deep", "{\"text\": \"a\", \"metadata\": {\"m\": " + meta + "}}"),
               400, "deep metadata");
  expect_error(req("POST", "/collections/robust/search", "{\"query\": \"a\", \"filter\": {\"m\": " + meta + "}}"),
               400, "deep filter");
  expect_error(req("POST", "/collections/robust/documents", "{\"documents\": " + meta + "}"), 400, "deep batch");
}

// ---- ranges: k, dimensions ----------------------------------------------------------------

TEST_F(Robustness, HugeOrZeroKGets422) {
  for (const char* k : {"0", "-1", "1001", "1000000", "2147483648", "9223372036854775807", "-9223372036854775808"})
    expect_error(req("POST", "/collections/robust/search", std::string(R"({"query": "a", "k": )") + k + "}"), 422,
                 std::string("k = ") + k);
  // Out of int64 range: not an integer the API can represent; a clear error either way.
  HttpResult r = req("POST", "/collections/robust/search", R"({"query": "a", "k": 1e30})");
  EXPECT_TRUE(r.status == 400 || r.status == 422) << r.status << " " << r.body;
  // k = 1000 is allowed and returns what exists.
  HttpResult ok = req("POST", "/collections/robust/search", R"({"query": "a", "k": 1000})");
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST_F(Robustness, WrongDimensionsGet422) {
  // Search vectors of the wrong length.
  for (int n : {dimension_ - 1, dimension_ + 1, 1, 4 * dimension_})
    expect_error(req("POST", "/collections/robust/search", json{{"vector", unit_vector(n)}, {"k", 3}}.dump()),
                 422, "vector of " + std::to_string(n));
  expect_error(req("POST", "/collections/robust/search", R"({"vector": [], "k": 3})"), 422, "empty vector");
  // /v1/embeddings dimensions outside min..hidden.
  for (int d : {0, -5, dimension_ + 1, 1 << 20, 31})
    expect_error(req("POST", "/v1/embeddings", json{{"input", "a"}, {"dimensions", d}}.dump()), 422,
                 "dimensions " + std::to_string(d));
  // Collection dimension outside 32..hidden.
  for (int d : {-1, 16, dimension_ + 1, 1 << 30})
    expect_error(req("POST", "/collections", json{{"name", "dims"}, {"dimension", d}}.dump()), 422,
                 "collection dimension " + std::to_string(d));
  expect_error(req("GET", "/collections/dims"), 404, "rejected collection created");
  // No tokens at all: a range error.
  for (const char* in : {"[]", "[[]]"})
    expect_error(req("POST", "/v1/embeddings", std::string("{\"input\": ") + in + "}"), 422,
                 std::string("token ids ") + in);
}

TEST_F(Robustness, TokenIdsOutsideTheVocabularyGet400) {
  // Not a range the caller tunes (like k or dimensions) but an invalid argument: 400.
  for (const char* in : {"[-1]", "[151669]", "[2147483647]", "[[1, 2], [99999999]]", "[4294967296]"})
    expect_error(req("POST", "/v1/embeddings", std::string("{\"input\": ") + in + "}"), 400,
                 std::string("token ids ") + in);
}

// ---- unknown ids --------------------------------------------------------------------------

TEST_F(Robustness, UnknownCollectionsAndDocumentsGet404) {
  expect_error(req("GET", "/collections/nope"), 404, "unknown collection");
  expect_error(req("DELETE", "/collections/nope"), 404, "delete unknown collection");
  expect_error(req("POST", "/collections/nope/search", R"({"query": "a"})"), 404, "search unknown collection");
  expect_error(req("PUT", "/collections/nope/documents/a", R"({"text": "a"})"), 404, "PUT into unknown collection");
  expect_error(req("POST", "/collections/nope/documents", R"({"documents": [{"id": "a", "text": "a"}]})"), 404,
               "batch into unknown collection");
  expect_error(req("GET", "/collections/robust/documents/nope"), 404, "unknown document");
  expect_error(req("DELETE", "/collections/robust/documents/nope"), 404, "delete unknown document");
  expect_error(req("POST", "/collections/robust/search", R"({"id": "nope", "k": 3})"), 404, "search by unknown id");
  // Ids are at most 512 bytes: a longer one is a range error, even where it would be unknown.
  expect_error(req("GET", "/collections/robust/documents/" + url_encode(std::string(600, 'x'))), 422,
               "over-long id");
}

TEST_F(Robustness, OverlongIdsAndUnknownRoutes) {
  expect_error(req("PUT", "/collections/robust/documents/" + std::string(513, 'i'), R"({"text": "a"})"),
               422, "id of 513 bytes");
  // In a batch, a bad item gets a per-item error and the others are written.
  HttpResult b = req("POST", "/collections/robust/documents",
                     json{{"documents", {{{"id", std::string(513, 'i')}, {"text", "a"}},
                                         {{"id", "fine-neighbour"}, {"text", "b"}}}}}.dump());
  ASSERT_EQ(b.status, 200) << b.body;
  json bj = json::parse(b.body, nullptr, false);
  ASSERT_TRUE(bj.contains("results") && bj["results"].size() == 2) << b.body;
  EXPECT_TRUE(bj["results"][0].contains("error")) << b.body;
  EXPECT_FALSE(bj["results"][1].contains("error")) << b.body;
  EXPECT_EQ(req("GET", "/collections/robust/documents/fine-neighbour").status, 200);
  expect_error(req("GET", "/nope"), 404, "unknown route");
  expect_error(req("GET", "/collections/robust/documents"), 405, "GET on a POST route");
  auto t0 = Clock::now();
  HttpResult longpath = req("GET", "/collections/" + std::string(20000, 'a'));
  EXPECT_GE(longpath.status, 400) << "20 kB path";
  EXPECT_LT(longpath.status, 500) << "20 kB path";
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 2.0) << "20 kB path answered slowly";
}

// ---- NDJSON import: bad lines are reported per line, the rest is written ------------------

TEST_F(Robustness, ImportReportsBadLinesAndWritesTheRest) {
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  std::vector<std::pair<std::string, int>> lines = {  // line, expected per-line status (0: ok)
      {R"({"id": "imp-1", "text": "first good line"})", 0},
      {"{not json", 400},
      {"{\"id\": \"imp-bad-utf8\", \"text\": \"\xff\xfe\"}", 400},
      {deep, 400},
      {R"({"id": 7, "text": "id of the wrong type"})", 400},
      {R"({"id": "imp-2", "text": "second good line", "metadata": {"n": 2}})", 0},
      {"{\"id\": \"" + std::string(513, 'x') + "\", \"text\": \"long id\"}", 422},
      {"{\"id\": \"imp-huge\", \"text\": \"" + std::string(kMaxRequestBytes + 10, 'h') + "\"}", 413},
      {"", 0},  // blank lines are allowed and skipped
      {R"({"id": "imp-3", "text": "third good line"})", 0},
  };
  std::string body;
  for (const auto& l : lines) body += l.first + "\n";
  HttpResult r = req("POST", "/collections/robust/import", body, {"Content-Type: application/x-ndjson"});
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 500);
  json j = json::parse(r.body, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.body.substr(0, 500);
  EXPECT_EQ(j.value("upserted", -1), 3) << r.body.substr(0, 800);
  EXPECT_EQ(j.value("failed", -1), 6) << r.body.substr(0, 800);
  std::map<int64_t, int> reported;
  for (const auto& e : j.value("errors", json::array()))
    reported[e.value("line", int64_t{-1})] = e.contains("error") ? e["error"].value("status", 0) : 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].second == 0) {
      EXPECT_EQ(reported.count(static_cast<int64_t>(i + 1)), 0u) << "line " << i + 1 << " reported";
    } else {
      EXPECT_EQ(reported[static_cast<int64_t>(i + 1)], lines[i].second) << "line " << i + 1;
    }
  }
  for (const char* id : {"imp-1", "imp-2", "imp-3"})
    EXPECT_EQ(req("GET", std::string("/collections/robust/documents/") + id).status, 200) << id;
  expect_error(req("GET", "/collections/robust/documents/imp-bad-utf8"), 404, "bad line stored");
  expect_error(req("GET", "/collections/robust/documents/imp-huge"), 404, "oversized line stored");
}

// ---- slow and broken clients --------------------------------------------------------------

// Opens n connections that send request headers (and part of a body) and then stall.
std::vector<int> open_stalled(int port, int n, bool in_headers) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = connect_loopback(port, 60);
    if (fd < 0) continue;
    if (in_headers) send_all(fd, "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Ty");
    else send_all(fd, "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Content-Length: 1000\r\n\r\n{\"input\": \"slow");
    fds.push_back(fd);
  }
  return fds;
}

// Times a few real requests while stalled connections are open.
double worst_latency_s(int port, int requests) {
  double worst = 0;
  for (int i = 0; i < requests; ++i) {
    auto t0 = Clock::now();
    HttpResult r = http_request(port, "POST", "/v1/embeddings", R"({"input": "still serving?"})", {}, 60);
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_EQ(r.status, 200) << r.error << r.body;
    worst = std::max(worst, s);
  }
  return worst;
}

TEST_F(Robustness, SlowClientsDoNotStopOthers) {
  // Fewer stalled clients than HTTP threads: others must be served at once.
  for (bool in_headers : {false, true}) {
    std::vector<int> fds = open_stalled(server_->port(), kHttpThreads / 2, in_headers);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    double worst = worst_latency_s(server_->port(), 5);
    EXPECT_LT(worst, 2.0) << (in_headers ? "headers" : "body") << " stalled: requests waited " << worst << " s";
    for (int fd : fds) ::close(fd);
  }
}

TEST_F(Robustness, MoreSlowClientsThanThreadsAreTimedOut) {
  // More stalled connections than HTTP workers: they hold no worker (the front reads bodies
  // asynchronously and hands only complete requests to the workers), so a new client is
  // served at once; the stalled connections are closed by the server after --read-timeout
  // (10 s by default), not held forever. (With cpp-httplib's thread per connection a new
  // client waited 28-29 s here.)
  std::vector<int> fds = open_stalled(server_->port(), 2 * kHttpThreads, false);
  auto t0 = Clock::now();
  HttpResult r = http_request(server_->port(), "POST", "/v1/embeddings", R"({"input": "x"})", {}, 120);
  double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_EQ(r.status, 200) << r.error;
  std::printf("with %d stalled connections a new request waited %.2f s\n", 2 * kHttpThreads, waited);
  EXPECT_LT(waited, 2.0) << "stalled clients blocked others for " << waited << " s";
  // The server must have given up on the stalled ones (EOF or an error response).
  int closed = 0;
  for (int fd : fds) {
    HttpResult s = read_response(fd);  // returns at EOF or after the socket timeout (60 s)
    if (s.status != 0 || s.error.find("recv") == std::string::npos) ++closed;
    ::close(fd);
  }
  EXPECT_EQ(closed, static_cast<int>(fds.size())) << "stalled connections left open by the server";
}

TEST_F(Robustness, ClientsThatVanishMidRequest) {
  for (int i = 0; i < 20; ++i) {
    int fd = connect_loopback(server_->port(), 5);
    ASSERT_GE(fd, 0);
    std::string body = json{{"input", std::vector<std::string>(64, "a text to embed that nobody waits for")}}.dump();
    std::string head = "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    if (i % 2 == 0) send_all(fd, head + body.substr(0, body.size() / 2));  // half a body
    else send_all(fd, head + body);  // whole request, gone before the answer
    ::close(fd);
  }
}

TEST_F(Robustness, ClientThatNeverReadsItsResponse) {
  // A large response (2048 embeddings) to a client that never reads: the server's write must
  // time out rather than hold a thread forever, and others are served meanwhile.
  int fd = connect_loopback(server_->port(), 5);
  ASSERT_GE(fd, 0);
  int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  std::string body = json{{"input", std::vector<std::string>(2048, "x")}}.dump();
  send_all(fd, "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  double worst = worst_latency_s(server_->port(), 3);
  EXPECT_LT(worst, 5.0);
  ::close(fd);
}

// ---- everything at once -------------------------------------------------------------------

TEST_F(Robustness, BadInputUnderConcurrentGoodTraffic) {
  std::atomic<bool> stop{false};
  std::atomic<int> good_ok{0}, good_bad{0};
  std::vector<std::thread> good;
  for (int t = 0; t < 3; ++t)
    good.emplace_back([&, t] {
      for (int i = 0; !stop.load(); ++i) {
        HttpResult r = (i % 2)
            ? http_request(server_->port(), "POST", "/collections/robust/search", R"({"query": "document", "k": 5})")
            : http_request(server_->port(), "PUT", "/collections/robust/documents/good-" + std::to_string(t) + "-" + std::to_string(i),
                           json{{"text", "good document " + std::to_string(i)}}.dump());
        (r.status == 200 ? good_ok : good_bad)++;
      }
    });
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"/v1/embeddings", "{\"input\": \"\xff\"}"},
      {"/v1/embeddings", std::string(5000, '[')},
      {"/v1/embeddings", R"({"input": [151669]})"},
      {"/collections/robust/search", R"({"query": "a", "k": 100000})"},
      {"/collections/robust/search", R"({"vector": [1, 2]})"},
      {"/collections/nope/search", R"({"query": "a"})"},
      {"/collections/robust/documents", R"({"documents": {"id": 5}})"},
  };
  std::vector<std::thread> attackers;
  const auto until = Clock::now() + std::chrono::seconds(3);
  for (int t = 0; t < 4; ++t)
    attackers.emplace_back([&, t] {
      for (int i = 0; Clock::now() < until; ++i) {
        const auto& b = bad[(i + t) % bad.size()];
        HttpResult r = http_request(server_->port(), "POST", b.first, b.second);
        EXPECT_GE(r.status, 400) << b.first << " " << b.second.substr(0, 50);
        EXPECT_LT(r.status, 500) << b.first << " " << b.second.substr(0, 50) << ": " << r.body;
      }
    });
  for (auto& a : attackers) a.join();
  stop = true;
  for (auto& g : good) g.join();
  EXPECT_GT(good_ok.load(), 0);
  EXPECT_EQ(good_bad.load(), 0) << "good requests failed while bad ones were being sent";
}

}  // namespace
}  // namespace qsearch::testing
