// The HTTP front (issue 10, docs/server.md): slow and hostile clients hold no worker, limits
// answer with the documented status, strict parsing, half-closed clients, bounded /metrics,
// fairness under 256 keep-alive clients, connection caps. One `qsearch serve` (test model, CPU
// engine, admin key, 4 HTTP workers, 2 s head timeout) for the suite; the caps get their own.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "api/server_util.h"

namespace qsearch::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kKey = "front-key";
constexpr int kWorkers = 4;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Resident set of a process in bytes (VmRSS), -1 if unreadable.
int64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

// True when the server closed the connection (EOF or reset) within timeout_s.
bool closed_by_server(int fd, double timeout_s) {
  auto t0 = Clock::now();
  char buf[4096];
  while (seconds_since(t0) < timeout_s) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return true;
  }
  return false;
}

class HttpFront : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string err;
    ASSERT_FALSE(test_model_dir(&err).empty()) << err;
    tmp_ = make_temp_dir("qsearch-front");
    ASSERT_FALSE(tmp_.empty());
    server_ = new ServerProcess((tmp_ / "data").string(),
                                {"--http-threads", std::to_string(kWorkers), "--head-timeout", "2",
                                 "--read-timeout", "2", "--min-body-rate", "1000"},
                                {{"QSEARCH_API_KEY", kKey}});
    ASSERT_TRUE(server_->start()) << server_->start_error();
    ASSERT_EQ(server_->post("/collections", json{{"name", "front"}}, kKey).status, 201);
    for (int i = 0; i < 4; ++i)
      ASSERT_EQ(server_
                    ->put("/collections/front/documents/d" + std::to_string(i),
                          {{"text", "front document " + std::to_string(i)}}, kKey)
                    .status,
                200);
  }
  static void TearDownTestSuite() {
    if (server_) {
      EXPECT_NE(server_->stop(30), -1);
      delete server_;
      server_ = nullptr;
    }
    fs::remove_all(tmp_);
  }
  void SetUp() override { ASSERT_TRUE(server_ && server_->running()); }
  void TearDown() override {
    ASSERT_TRUE(server_->running()) << server_->log_tail();
    EXPECT_EQ(server_->request("GET", "/health", "", {}, 10).status, 200);
  }

  static HttpResult req(const std::string& method, const std::string& path,
                        const std::string& body = "", std::vector<std::string> headers = {}) {
    headers.push_back("Authorization: Bearer " + kKey);
    return server_->request(method, path, body, headers, 30);
  }
  // Raw bytes on a new connection; the first response.
  static HttpResult raw(const std::string& bytes, double timeout_s = 10) {
    int fd = connect_loopback(server_->port(), timeout_s);
    EXPECT_GE(fd, 0);
    send_all(fd, bytes);
    HttpResult r = read_response(fd);
    ::close(fd);
    return r;
  }
  static std::string search_body() { return R"({"query": "front document", "k": 2})"; }

  static ServerProcess* server_;
  static fs::path tmp_;
};

ServerProcess* HttpFront::server_ = nullptr;
fs::path HttpFront::tmp_;

const std::string kAuth = "Authorization: Bearer " + kKey + "\r\n";

// ---- slow clients -------------------------------------------------------------------------

TEST_F(HttpFront, DrippingHeadersHoldNoWorker) {
  // 8x as many connections as workers, each sending one header line every 300 ms.
  const int n = 8 * kWorkers;
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = connect_loopback(server_->port(), 10);
    ASSERT_GE(fd, 0);
    send_all(fd, "POST /collections/front/search HTTP/1.1\r\nHost: x\r\n");
    fds.push_back(fd);
  }
  std::atomic<bool> stop{false};
  std::thread drip([&] {
    for (int line = 0; !stop; ++line) {
      for (int fd : fds) send_all(fd, "X-Drip-" + std::to_string(line) + ": a\r\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  for (int i = 0; i < 3; ++i) {
    auto t0 = Clock::now();
    EXPECT_EQ(server_->request("GET", "/health", "", {}, 10).status, 200);
    HttpResult s = req("POST", "/collections/front/search", search_body());
    EXPECT_EQ(s.status, 200) << s.body << s.error;
    EXPECT_LT(seconds_since(t0), 2.0) << "health + search waited behind dripping clients";
  }
  // The head timeout (2 s here) closes every dripping connection.
  auto t0 = Clock::now();
  int closed = 0;
  for (int fd : fds) closed += closed_by_server(fd, 6.0 - seconds_since(t0)) ? 1 : 0;
  stop = true;
  drip.join();
  for (int fd : fds) ::close(fd);
  EXPECT_EQ(closed, n) << "dripping connections outlived the head timeout";
}

TEST_F(HttpFront, SlowBodyIsCutAtTheMinimumRate) {
  // 100 kB announced, 20 bytes every 200 ms (100 B/s < 1000 B/s): closed after the 2 s grace.
  int fd = connect_loopback(server_->port(), 10);
  ASSERT_GE(fd, 0);
  send_all(fd,
           "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n" + kAuth +
               "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"input\": \"");
  auto t0 = Clock::now();
  bool closed = false;
  while (!closed && seconds_since(t0) < 10) {
    if (!send_all(fd, std::string(20, 'a'))) break;
    closed = closed_by_server(fd, 0.2);
  }
  double waited = seconds_since(t0);
  ::close(fd);
  EXPECT_LT(waited, 6.0) << "a body at 100 B/s was read for " << waited << " s";
  EXPECT_GT(waited, 1.5) << "cut before the grace period";
}

// ---- heads: size, count, parsing ----------------------------------------------------------

TEST_F(HttpFront, HeaderFloodGets431AndMemoryStaysFlat) {
  int64_t before = rss_bytes(server_->pid());
  ASSERT_GT(before, 0);
  std::vector<std::thread> floods;
  std::atomic<int> got431{0};
  for (int c = 0; c < 4; ++c)
    floods.emplace_back([&] {
      int fd = connect_loopback(server_->port(), 10);
      if (fd < 0) return;
      std::string head = "GET /health HTTP/1.1\r\nHost: x\r\n";
      std::string line = "X-Flood: " + std::string(1000, 'f') + "\r\n";
      std::thread reader([&] {
        HttpResult r = read_response(fd);
        if (r.status == 431) got431++;
      });
      send_all(fd, head);
      for (int i = 0; i < 25000; ++i)  // 25 MB of header lines, until the server closes
        if (!send_all(fd, line)) break;
      ::shutdown(fd, SHUT_WR);
      reader.join();
      ::close(fd);
    });
  for (auto& t : floods) t.join();
  int64_t after = rss_bytes(server_->pid());
  EXPECT_EQ(got431.load(), 4);
  EXPECT_LT(after - before, 64ll << 20) << "RSS " << before << " -> " << after;
  // Many small fields: 431 as well.
  std::string many = "GET /health HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 150; ++i) many += "X-F" + std::to_string(i) + ": v\r\n";
  HttpResult r = raw(many + "\r\n");
  EXPECT_EQ(r.status, 431) << r.raw.substr(0, 300);
  EXPECT_NE(r.body.find("max_header_count"), std::string::npos) << r.body;
}

TEST_F(HttpFront, ContentLengthAndTransferEncodingAreStrict) {
  const std::string head =
      "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n" + kAuth + "Content-Type: application/json\r\n";
  const std::string body = R"({"input": "x"})";
  const std::string len = std::to_string(body.size());
  struct Case {
    std::string headers;
    int status;
  };
  const std::vector<Case> cases = {
      {"Content-Length: " + len + "\r\nContent-Length: 3\r\n", 400},
      {"Content-Length: " + len + "\r\nContent-Length: " + len + "\r\n", 400},
      {"Content-Length: " + len + ", " + len + "\r\n", 400},
      {"Content-Length: " + len + "\r\nTransfer-Encoding: chunked\r\n", 400},
      {"Transfer-Encoding: chunked\r\nContent-Length: " + len + "\r\n", 400},
      {"Content-Length: -5\r\n", 400},
      {"Content-Length: abc\r\n", 400},
      {"Content-Length: +14\r\n", 400},
      {"Transfer-Encoding: gzip\r\n", 501},
  };
  for (const auto& c : cases) {
    HttpResult r = raw(head + c.headers + "\r\n" + body);
    EXPECT_EQ(r.status, c.status) << c.headers << r.raw.substr(0, 300);
    json j = json::parse(r.body, nullptr, false);
    EXPECT_TRUE(j.contains("error")) << c.headers << r.body;
    EXPECT_EQ(r.body.find("-5 bytes"), std::string::npos) << r.body;
  }
  // Chunked alone is fine.
  HttpResult ok = raw(head + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + "e\r\n" +
                      body + "\r\n0\r\n\r\n");
  EXPECT_EQ(ok.status, 200) << ok.raw.substr(0, 300);
}

TEST_F(HttpFront, NulAndControlCharactersInHeadersAreRefused) {
  std::string nul_key = "Authorization: Bearer " + kKey + std::string(1, '\0') + "junk\r\n";
  HttpResult r = raw("GET /collections HTTP/1.1\r\nHost: x\r\n" + nul_key + "\r\n");
  EXPECT_EQ(r.status, 400) << r.raw.substr(0, 300);
  r = raw("GET /collections HTTP/1.1\r\nHost: x\r\n" + kAuth +
          "X-A: a\x01"
          "b\r\n\r\n");
  EXPECT_EQ(r.status, 400) << r.raw.substr(0, 300);
  r = raw("GET /collections HTTP/1.1\r\nHost: x\r\n" + kAuth + "Connection: close\r\n\r\n");
  EXPECT_EQ(r.status, 200) << r.raw.substr(0, 300);
}

// ---- bodies that are not JSON; authentication first ---------------------------------------

TEST_F(HttpFront, MultipartGets415AfterAuthentication) {
  const std::string mp = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--b--\r\n";
  auto post = [&](const std::string& auth) {
    return "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n" + auth +
           "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: " +
           std::to_string(mp.size()) + "\r\n\r\n" + mp;
  };
  HttpResult r = raw(post(""));
  EXPECT_EQ(r.status, 401) << r.raw.substr(0, 300);
  r = raw(post(kAuth));
  EXPECT_EQ(r.status, 415) << r.raw.substr(0, 300);
  EXPECT_EQ(json::parse(r.body, nullptr, false)["error"]["code"], "unsupported_media_type");
  EXPECT_EQ(r.body.find("bad_function_call"), std::string::npos);
  // A request pipelined after the refused one is answered on the same connection.
  int fd = connect_loopback(server_->port(), 10);
  ASSERT_GE(fd, 0);
  send_all(fd, post(kAuth) + "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  // Both answers may arrive in one read (on a loaded machine they often do).
  std::string pending;
  HttpResult first = read_response(fd, &pending);
  HttpResult second = read_response(fd, &pending);
  ::close(fd);
  EXPECT_EQ(first.status, 415);
  EXPECT_EQ(second.status, 200) << second.error;
  // Other non-JSON types; NDJSON only where it is expected.
  EXPECT_EQ(req("POST", "/v1/embeddings", "x", {"Content-Type: application/octet-stream"}).status,
            415);
  EXPECT_EQ(
      req("POST", "/v1/embeddings", R"({"input": "x"})", {"Content-Type: application/x-ndjson"})
          .status,
      415);
  EXPECT_EQ(req("POST", "/v1/embeddings", R"({"input": "x"})",
                {"Content-Type: application/json; charset=utf-8"})
                .status,
            200);
  // curl -d sends application/x-www-form-urlencoded: parsed as JSON, as documented.
  EXPECT_EQ(req("POST", "/v1/embeddings", R"({"input": "x"})",
                {"Content-Type: application/x-www-form-urlencoded"})
                .status,
            200);
  HttpResult imp = req("POST", "/collections/front/import", "{\"id\": \"n1\", \"text\": \"t\"}\n",
                       {"Content-Type: application/x-ndjson"});
  EXPECT_EQ(imp.status, 200) << imp.body;
}

// ---- half-close ---------------------------------------------------------------------------

TEST_F(HttpFront, HalfClosedClientGetsItsResponse) {
  std::string body = R"({"text": "written by a half-closed client"})";
  int fd = connect_loopback(server_->port(), 30);
  ASSERT_GE(fd, 0);
  send_all(fd, "PUT /collections/front/documents/half HTTP/1.1\r\nHost: x\r\n" + kAuth +
                   "Content-Type: application/json\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n\r\n" + body);
  ::shutdown(fd, SHUT_WR);
  HttpResult r = read_response(fd);
  ::close(fd);
  EXPECT_EQ(r.status, 200) << r.error << r.raw.substr(0, 300);
  EXPECT_EQ(req("GET", "/collections/front/documents/half").status, 200);
  // A read whose client ended its stream: its queued work may be dropped (as a disconnected
  // client's is, tests/api Load.WorkOfADisconnectedClientIsDropped), but an answer still comes,
  // the result or 499.
  fd = connect_loopback(server_->port(), 30);
  ASSERT_GE(fd, 0);
  std::string sb = search_body();
  send_all(fd, "POST /collections/front/search HTTP/1.1\r\nHost: x\r\n" + kAuth +
                   "Content-Length: " + std::to_string(sb.size()) + "\r\n\r\n" + sb);
  ::shutdown(fd, SHUT_WR);
  r = read_response(fd);
  ::close(fd);
  EXPECT_TRUE(r.status == 200 || r.status == 499) << r.status << " " << r.error;
}

// ---- methods, /metrics, request ids --------------------------------------------------------

TEST_F(HttpFront, UnknownMethodsAndMetricsStayBounded) {
  HttpResult m0 = req("GET", "/metrics");
  ASSERT_EQ(m0.status, 200);
  for (int i = 0; i < 200; ++i) {
    std::string method = "M" + std::to_string(i * 7919) + "X";
    HttpResult r = raw(method + " /p" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(r.status, 501) << method << " " << r.raw.substr(0, 200);
  }
  HttpResult opt = req("OPTIONS", "/v1/embeddings");
  EXPECT_EQ(opt.status, 405);
  EXPECT_NE(opt.header("Allow").find("POST"), std::string::npos);
  EXPECT_EQ(req("DELETE", "/v1/embeddings").status, 405);
  EXPECT_EQ(req("GET", "/nope" + std::to_string(1)).status, 404);
  HttpResult m1 = req("GET", "/metrics");
  ASSERT_EQ(m1.status, 200);
  EXPECT_EQ(m1.body.find("M7919X"), std::string::npos);
  EXPECT_GE(
      server_->metric(
          "qsearch_http_requests_total{method=\"OTHER\",route=\"(unmatched)\",status=\"501\"}",
          kKey),
      200)
      << m1.body;
  // A fixed set of labels: the body grows by a few new series, not per method or path.
  EXPECT_LT(m1.body.size(), m0.body.size() + 4096) << m0.body.size() << " -> " << m1.body.size();
  EXPECT_NE(m1.body.find("qsearch_http_connections "), std::string::npos);
}

TEST_F(HttpFront, RequestIdIsEchoedOrGenerated) {
  HttpResult r = req("GET", "/health", "", {"X-Request-Id: abc-123.x"});
  EXPECT_EQ(r.header("X-Request-Id"), "abc-123.x");
  r = req("GET", "/health", "", {"X-Request-Id: bad id with spaces"});
  EXPECT_EQ(r.header("X-Request-Id").size(), 32u) << r.header("X-Request-Id");
  HttpResult r2 = req("GET", "/health");
  EXPECT_EQ(r2.header("X-Request-Id").size(), 32u);
  EXPECT_NE(r.header("X-Request-Id"), r2.header("X-Request-Id"));
  r = req("GET", "/health", "", {"X-Request-Id: " + std::string(200, 'a')});
  EXPECT_EQ(r.header("X-Request-Id").size(), 32u);
}

// ---- fairness -----------------------------------------------------------------------------

TEST_F(HttpFront, KeepAliveClientsAreServedFairly) {
  const int clients = 256, per_client = 4;
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  std::atomic<int> connected{0};
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      int fd = connect_loopback(server_->port(), 60);
      if (fd < 0) {
        failed++;
        return;
      }
      connected++;
      while (connected < clients) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      std::string body = R"({"query": "client )" + std::to_string(c) + R"(", "k": 2})";
      for (int i = 0; i < per_client; ++i) {
        auto t0 = Clock::now();
        if (!send_all(fd, "POST /collections/front/search HTTP/1.1\r\nHost: x\r\n" + kAuth +
                              "Content-Type: application/json\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body)) {
          failed++;
          break;
        }
        HttpResult r = read_response(fd);
        if (r.status != 200) {
          failed++;
          break;
        }
        latencies[c].push_back(seconds_since(t0));
      }
      ::close(fd);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  std::vector<double> all;
  for (const auto& l : latencies) {
    EXPECT_EQ(l.size(), static_cast<size_t>(per_client));
    all.insert(all.end(), l.begin(), l.end());
  }
  ASSERT_FALSE(all.empty());
  std::sort(all.begin(), all.end());
  double median = all[all.size() / 2], worst = all.back();
  std::printf("%d keep-alive clients x %d searches: median %.1f ms, max %.1f ms\n", clients,
              per_client, 1e3 * median, 1e3 * worst);
  EXPECT_LE(worst, 10 * median) << "median " << median << " s, max " << worst << " s";
}

// ---- connection caps ----------------------------------------------------------------------

TEST(HttpFrontCaps, ConnectionCapsAnswer503WithRetryAfter) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data",
                       {"--max-connections", "16", "--max-connections-per-client", "6"});
  ASSERT_TRUE(server.start()) << server.start_error();
  std::vector<int> fds;
  for (int i = 0; i < 6; ++i) {
    int fd = connect_loopback(server.port(), 10);
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
  }
  // The server counts a connection once its acceptor has run: on a loaded machine that can
  // take longer than any fixed pause, so ask until the six are counted (at most 5 s).
  HttpResult r;
  for (int i = 0; i < 100; ++i) {
    r = server.request("GET", "/health", "", {}, 10);
    if (r.status != 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(r.status, 503) << r.raw.substr(0, 300);
  EXPECT_EQ(r.header("Retry-After"), "1");
  EXPECT_NE(r.body.find("max_connections_per_client"), std::string::npos) << r.body;
  ::close(fds.back());
  fds.pop_back();
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    served = server.request("GET", "/health", "", {}, 10).status == 200;
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(served) << "a freed slot was not reused";
  for (int fd : fds) ::close(fd);
  EXPECT_GE(server.metric("qsearch_http_connections_refused_total"), 1);
}

}  // namespace
}  // namespace qsearch::testing
