// End-to-end test harness: runs `qsearch serve` (QSEARCH_BINARY) as a subprocess on a
// loopback port it picks itself (--port 0, read back from its log) with the small test model
// on the CPU engine, and talks to it over HTTP.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/http.h"

namespace qsearch::testing {

using json = nlohmann::json;

// A fresh directory removed on destruction.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The random-weight test model at QSEARCH_DEPS_DIR/test-model (the one `make run` uses),
// written on first use under a file lock. Fails the test if .deps/qwen3/tokenizer.json is
// missing (run `make deps`).
std::string test_model_dir();

struct HttpResult {
  int status = 0;  // 0: no response (connection failed or timed out)
  std::string body;
  httplib::Headers headers;
  json json_body() const;  // null when the body is not JSON
  std::string header(const std::string& name) const;
};

class ServerProcess {
 public:
  // extra_args are appended after --model/--device/--data-dir/--host/--port; env entries are
  // added to the child's environment (QSEARCH_* of the parent are removed first).
  explicit ServerProcess(std::string data_dir, std::vector<std::string> extra_args = {},
                         std::map<std::string, std::string> env = {});
  ~ServerProcess();

  // Starts the process; with wait_ready, waits (up to 120 s) until /ready says 200.
  bool start(bool wait_ready = true);
  bool wait_ready(double timeout_s = 120);
  // SIGTERM and wait; returns the exit code (or 128 + signal).
  int stop();
  // SIGKILL and wait.
  void kill9();
  bool running();
  // Waits for the process to exit by itself; returns the exit code or -1 on timeout.
  int wait_exit(double timeout_s);

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const;  // stdout + stderr so far
  const std::string& data_dir() const { return data_dir_; }

  // Requests (key: Bearer key, empty for none).
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

 private:
  std::unique_ptr<httplib::Client> client(const std::string& key, double timeout_s) const;
  std::string data_dir_;
  std::vector<std::string> extra_args_;
  std::map<std::string, std::string> env_;
  std::string log_path_;
  int port_ = 0;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// Sends raw bytes on a new connection and returns what comes back within timeout_s.
std::string raw_exchange(int port, const std::string& request, double timeout_s = 3);

// URL-encodes a path segment (everything but unreserved characters).
std::string url_encode(const std::string& s);

}  // namespace qsearch::testing
