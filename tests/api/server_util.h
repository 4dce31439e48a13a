// The end-to-end test harness of every test that talks to a real server (tests/api,
// tests/chunking, tests/robustness, tests/crash): runs `qsearch serve` (QSEARCH_BINARY) as a
// subprocess on a loopback port it picks itself (--port 0, read back from its log) with the
// small test model on the CPU engine, and talks to it over HTTP in two ways:
//   - get/post/put/del: through cpp-httplib, a real client library;
//   - request()/http_request(): a minimal blocking HTTP/1.1 client over raw sockets, for bytes
//     no well-behaved client library would send (invalid UTF-8, truncated bodies, stalled
//     requests). A client with no shared state cannot hide a server bug behind a connection
//     pool.
// Every call is bounded by timeouts, so a hung server fails the test instead of hanging it.
//
// A test folder other than tests/api gets the implementation by a <area>_util.cc that includes
// api/server_util.cc (tests/CMakeLists.txt compiles each folder's *_util.cc into its binary).
// Not thread-safe per object, except the requests: get/post/put/del/request/metric and the free
// http_request() may be called from many threads at once.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/http.h"

namespace qsearch::testing {

using json = nlohmann::json;

// A fresh directory under $TMPDIR (or /tmp) named prefix-XXXXXX; empty on failure. The caller
// removes it.
std::string make_temp_dir(const std::string& prefix);

// A fresh directory removed on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The random-weight test model (`qsearch make-test-model` defaults: seed 42, tiny shape):
// $QSEARCH_TEST_MODEL when that names a model directory, else QSEARCH_DEPS_DIR/test-model (the
// one `make run` uses), written on first use under a file lock. On failure (e.g.
// .deps/qwen3/tokenizer.json missing: run `make deps`) *error says why; the one-argument form
// fails the test instead.
std::string test_model_dir(std::string* error);
std::string test_model_dir();

struct HttpResult {
  int status = 0;  // 0: no response (connection failed, timed out, or cut inside the body)
  std::string body;
  httplib::Headers headers;  // names compare case-insensitively
  std::string error;         // why status is 0
  std::string raw;           // the bytes received (raw-socket client only)
  bool ok() const { return status >= 200 && status < 300; }
  json json_body() const;  // null when the body is not JSON
  std::string header(const std::string& name) const;
};

// ---- raw-socket client --------------------------------------------------------------------

// A connected TCP socket to 127.0.0.1:port with send/receive timeouts; -1 on failure.
int connect_loopback(int port, double timeout_s = 30.0);
bool send_all(int fd, const std::string& data);
// Reads one response: the head (a 100 Continue is skipped), then the body by Content-Length,
// or chunked to its last chunk, or (neither) until the peer closes; bounded by the socket
// timeout. A connection that ends inside the body gives status 0 (no answer).
HttpResult read_response(int fd);
// The same for pipelined answers: bytes read past this response are left in *pending, which
// the next call on the same connection reads first (pass the same string each time).
HttpResult read_response(int fd, std::string* pending);
// One request on a fresh connection (Connection: close). extra_headers are "Name: value" lines;
// POST and PUT get Content-Type: application/json unless extra_headers name one.
HttpResult http_request(int port, const std::string& method, const std::string& path,
                        const std::string& body = "",
                        const std::vector<std::string>& extra_headers = {},
                        double timeout_s = 60.0);
// Sends raw bytes on a new connection and returns what comes back within timeout_s.
std::string raw_exchange(int port, const std::string& request, double timeout_s = 3);

// URL-encodes a path segment (RFC 3986 unreserved characters kept).
std::string url_encode(const std::string& s);

// ---- the server ---------------------------------------------------------------------------

class ServerProcess {
 public:
  // Runs `qsearch serve --model <test model> --device cpu --data-dir data_dir --host 127.0.0.1
  // --port 0 --threads 2 extra_args...`; env entries are added to the child's environment
  // (QSEARCH_* of the parent are removed first). The log (stdout + stderr of every start) goes
  // to a file next to data_dir, left for the owner of that directory to remove.
  explicit ServerProcess(std::string data_dir, std::vector<std::string> extra_args = {},
                         std::map<std::string, std::string> env = {});
  ~ServerProcess();  // SIGKILL if still running
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  // Starts the process and waits for the port in its log; with wait_ready, then waits (up to
  // 120 s) until /ready says 200. On failure start_error() says why (with the log's tail).
  bool start(bool wait_ready = true);
  const std::string& start_error() const { return start_error_; }
  bool wait_ready(double timeout_s = 120);
  // SIGTERM, then waits up to timeout_s; returns the exit code (128 + signal when killed by
  // one), or -1 when it had to be SIGKILLed.
  int stop(double timeout_s = 60);
  // SIGKILL and wait (the crash).
  void kill9();
  // True while the child has not exited (reaps it if it has).
  bool running();
  // Waits for the process to exit by itself; returns the exit code or -1 on timeout.
  int wait_exit(double timeout_s);

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const;                          // stdout + stderr so far
  std::string log_tail(size_t n = 4000) const;      // the last n bytes, for failure messages
  const std::string& data_dir() const { return data_dir_; }

  // Requests through cpp-httplib (key: Bearer key, empty for none).
  HttpResult get(const std::string& path, const std::string& key = "") const;
  HttpResult del(const std::string& path, const std::string& key = "") const;
  HttpResult post(const std::string& path, const std::string& body, const std::string& key = "",
                  double timeout_s = 60) const;
  HttpResult post(const std::string& path, const char* body, const std::string& key = "") const {
    return post(path, std::string(body), key);
  }
  HttpResult post(const std::string& path, const json& body, const std::string& key = "") const {
    return post(path, body.dump(), key);
  }
  HttpResult put(const std::string& path, const json& body, const std::string& key = "") const;
  // One Prometheus sample value (the line "name{labels} value"; labels may be empty), -1 if absent.
  double metric(const std::string& name_with_labels, const std::string& key = "") const;

  // A request through the raw-socket client (see http_request).
  HttpResult request(const std::string& method, const std::string& path,
                     const std::string& body = "", const std::vector<std::string>& headers = {},
                     double timeout_s = 60.0) const {
    return http_request(port_, method, path, body, headers, timeout_s);
  }

 private:
  std::unique_ptr<httplib::Client> client(const std::string& key, double timeout_s) const;
  std::string data_dir_;
  std::vector<std::string> extra_args_;
  std::map<std::string, std::string> env_;
  std::string log_path_;
  std::string start_error_;
  int port_ = 0;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// A test suite whose tests share one server (default flags, fresh data directory), started
// before the suite's first test and killed after its last; s() is the server.
class SharedServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir();
    server_ = new ServerProcess(dir_->path() + "/data");
    ASSERT_TRUE(server_->start()) << server_->start_error() << "\n" << server_->log();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }
  static ServerProcess& s() { return *server_; }

 private:
  // One suite runs at a time, so the suites deriving from this one can share the slots.
  static inline ScratchDir* dir_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
};

}  // namespace qsearch::testing
