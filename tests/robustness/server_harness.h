// Test harness shared by tests/robustness and tests/crash: runs `qsearch serve` as a
// subprocess on a free loopback port with the small random-weight test model on the CPU
// engine, and talks to it with a minimal blocking HTTP/1.1 client over raw sockets.
//
// Raw sockets on purpose: the robustness tests send bytes no well-behaved client library would
// (invalid UTF-8, truncated bodies, stalled requests), and a client with no shared state cannot
// hide a server bug behind a connection pool. Every call is bounded by timeouts, so a hung
// server fails the test instead of hanging it.
//
// Header-only (both test folders include it); not thread-safe per object except where noted:
// http_request() may be called from many threads at once.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace qsearch::testing {

namespace fs = std::filesystem;

struct HttpResponse {
  int status = 0;                            // 0: no response (connection failed / timed out)
  std::map<std::string, std::string> headers;  // lower-cased names
  std::string body;
  std::string error;                         // why status is 0
  bool ok() const { return status >= 200 && status < 300; }
};

// A connected TCP socket to 127.0.0.1:port with send/receive timeouts; -1 on failure.
inline int connect_loopback(int port, double timeout_s = 30.0) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{};
  tv.tv_sec = static_cast<long>(timeout_s);
  tv.tv_usec = static_cast<long>((timeout_s - tv.tv_sec) * 1e6);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline bool send_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads one response: the head, then the body by Content-Length, or chunked to its last chunk,
// or (neither) until the peer closes; bounded by the socket timeout. A server may keep a
// connection open after answering (e.g. a 414 sent before it could read "Connection: close"),
// so the body is delimited by its length rather than by EOF where possible.
inline HttpResponse read_response(int fd) {
  HttpResponse r;
  std::string raw;
  char buf[65536];
  size_t head_end = std::string::npos;
  long long content_length = -1;
  bool chunked = false;
  auto body_complete = [&]() {
    if (head_end == std::string::npos) return false;
    size_t have = raw.size() - (head_end + 4);
    if (content_length >= 0) return have >= static_cast<size_t>(content_length);
    if (chunked) return raw.find("\r\n0\r\n\r\n", head_end) != std::string::npos ||
                        raw.compare(head_end + 4, 5, "0\r\n\r\n") == 0;
    return false;
  };
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      raw.append(buf, static_cast<size_t>(n));
      if (head_end == std::string::npos && (head_end = raw.find("\r\n\r\n")) != std::string::npos) {
        std::string head = raw.substr(0, head_end);
        for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        size_t cl = head.find("\r\ncontent-length:");
        if (cl != std::string::npos) content_length = std::atoll(head.c_str() + cl + 17);
        chunked = head.find("\r\ntransfer-encoding: chunked") != std::string::npos;
        if (head.rfind("http/1.1 1", 0) == 0) {  // 100 Continue: skip it, read the real head
          raw.erase(0, head_end + 4);
          head_end = std::string::npos;
          content_length = -1;
          chunked = false;
        }
      }
      if (body_complete()) break;
      continue;
    }
    if (n < 0 && raw.empty()) r.error = std::string("recv: ") + std::strerror(errno);
    break;
  }
  if (head_end == std::string::npos) {
    if (r.error.empty()) r.error = "no complete response head (" + std::to_string(raw.size()) + " bytes)";
    return r;
  }
  std::istringstream head(raw.substr(0, head_end));
  std::string line;
  std::getline(head, line);
  if (line.rfind("HTTP/1.", 0) != 0 || line.size() < 12) {
    r.error = "bad status line: " + line;
    return r;
  }
  r.status = std::atoi(line.c_str() + 9);
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t v = colon + 1;
    while (v < line.size() && line[v] == ' ') ++v;
    r.headers[name] = line.substr(v);
  }
  std::string body = raw.substr(head_end + 4);
  if (!body_complete() && (content_length >= 0 || chunked)) {
    // The connection ended inside the body (e.g. the server was killed while writing): this
    // is no answer, in particular no acknowledgement.
    r.status = 0;
    r.error = "truncated response body (" + std::to_string(body.size()) + " bytes received)";
    return r;
  }
  if (chunked) {
    std::string out;
    size_t pos = 0;
    while (pos < body.size()) {
      size_t eol = body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      size_t len = std::strtoul(body.substr(pos, eol - pos).c_str(), nullptr, 16);
      if (len == 0) break;
      out.append(body, eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    r.body = std::move(out);
  } else {
    if (content_length >= 0 && body.size() > static_cast<size_t>(content_length))
      body.resize(static_cast<size_t>(content_length));
    r.body = std::move(body);
  }
  return r;
}

// One request on a fresh connection (Connection: close). extra_headers are "Name: value" lines.
inline HttpResponse http_request(int port, const std::string& method, const std::string& path,
                                 const std::string& body = "",
                                 const std::vector<std::string>& extra_headers = {},
                                 double timeout_s = 60.0) {
  HttpResponse r;
  int fd = connect_loopback(port, timeout_s);
  if (fd < 0) {
    r.error = "connect failed";
    return r;
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  bool has_type = false;
  for (const auto& h : extra_headers) {
    req += h + "\r\n";
    if (strncasecmp(h.c_str(), "content-type:", 13) == 0) has_type = true;
  }
  if (!body.empty() || method == "POST" || method == "PUT") {
    if (!has_type) req += "Content-Type: application/json\r\n";
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n";
  req += body;
  if (!send_all(fd, req)) {
    // The server may answer early (413) and close while we are still sending: read anyway.
  }
  // No shutdown(SHUT_WR): the server rightly takes a half-closed socket for a client that left
  // (and drops its work); we read until the server closes (Connection: close).
  r = read_response(fd);
  ::close(fd);
  return r;
}

// Percent-encodes a path segment (RFC 3986 unreserved characters kept).
inline std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// A fresh directory under $TMPDIR (or /tmp), removed by the owner when done.
inline fs::path make_temp_dir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) return {};
  return fs::path(buf.data());
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs argv (no shell), waits, returns the exit status (-1 if it could not run).
inline int run_command(const std::vector<std::string>& argv, const fs::path& log) {
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// The tiny random-weight test model, generated once per process into a temp dir with our own
// `qsearch make-test-model` (deterministic from its seed). Returns the model directory.
inline fs::path test_model_dir(std::string* error) {
  static std::mutex mu;
  static fs::path dir;
  std::lock_guard<std::mutex> lock(mu);
  if (!dir.empty()) return dir;
  const char* env = std::getenv("QSEARCH_TEST_MODEL");
  if (env && *env && fs::exists(fs::path(env) / "config.json")) return dir = env;
  fs::path tmp = make_temp_dir("qsearch-test-model");
  fs::path out = tmp / "model";
  fs::path log = tmp / "make-test-model.log";
  std::string tokenizer = std::string(QSEARCH_DEPS_DIR) + "/qwen3/tokenizer.json";
  int rc = run_command({QSEARCH_BINARY, "make-test-model", "--tokenizer", tokenizer, "--out",
                        out.string()},
                       log);
  if (rc != 0 || !fs::exists(out / "config.json")) {
    if (error) *error = "make-test-model failed (rc " + std::to_string(rc) + "): " + read_file(log);
    return {};
  }
  return dir = out;
}

// A `qsearch serve` subprocess. start() waits for GET /ready == 200; kill9() is the crash;
// stop() is SIGTERM with a bounded wait (then SIGKILL). The log of every start is appended to
// log_path() so a failing test can print it.
class ServerProcess {
 public:
  ServerProcess(fs::path model_dir, fs::path data_dir, std::vector<std::string> extra_args = {})
      : model_dir_(std::move(model_dir)), data_dir_(std::move(data_dir)),
        extra_args_(std::move(extra_args)) {
    log_path_ = data_dir_.parent_path() / (data_dir_.filename().string() + "-server.log");
  }
  ~ServerProcess() { stop(); }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  const fs::path& log_path() const { return log_path_; }
  std::string log() const { return read_file(log_path_); }
  // The last n bytes of the log, for failure messages.
  std::string log_tail(size_t n = 4000) const {
    std::string l = log();
    return l.size() > n ? l.substr(l.size() - n) : l;
  }

  // Starts the server on a port of its own choosing (--port 0; the port is read back from the
  // "listening on http://host:port" log line, so parallel tests never race for a port) and
  // waits until /ready is 200. Returns an empty string on success, else the reason.
  std::string start(double ready_timeout_s = 120.0) {
    if (pid_ > 0) return "already running";
    std::error_code ec;
    const uintmax_t log_offset = fs::exists(log_path_) ? fs::file_size(log_path_, ec) : 0;
    std::vector<std::string> argv = {QSEARCH_BINARY, "serve",       "--model",
                                     model_dir_.string(), "--device", "cpu",
                                     "--data-dir", data_dir_.string(), "--host",
                                     "127.0.0.1", "--port", "0"};
    for (const auto& a : extra_args_) argv.push_back(a);
    pid_ = ::fork();
    if (pid_ < 0) return "fork failed";
    if (pid_ == 0) {
      ::setpgid(0, 0);
      int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    port_ = 0;
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(ready_timeout_s * 1000));
    while (std::chrono::steady_clock::now() < deadline) {
      if (!alive()) return "server exited during start-up: " + log_tail();
      if (port_ == 0) {
        std::string l = log();
        size_t p = l.find("listening on http://", static_cast<size_t>(log_offset));
        size_t colon = p == std::string::npos ? p : l.find(':', p + 20);
        if (colon != std::string::npos) port_ = std::atoi(l.c_str() + colon + 1);
      }
      if (port_ > 0) {
        HttpResponse r = http_request(port_, "GET", "/ready", "", {}, 5.0);
        if (r.status == 200) return "";
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return "server not ready within " + std::to_string(ready_timeout_s) + " s: " + log_tail();
  }

  // True while the child has not exited (reaps it if it has).
  bool alive() {
    if (pid_ <= 0) return false;
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == 0) return true;
    last_status_ = st;
    pid_ = -1;
    return false;
  }
  // The wait status of the last exit (valid after alive() returned false or a stop).
  int last_status() const { return last_status_; }

  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    last_status_ = st;
    pid_ = -1;
  }

  // SIGTERM, wait up to timeout_s for a graceful exit, else SIGKILL. True if it exited by itself.
  bool stop(double timeout_s = 30.0) {
    if (pid_ <= 0) return true;
    ::kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
    while (std::chrono::steady_clock::now() < deadline) {
      if (!alive()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    kill9();
    return false;
  }

  HttpResponse request(const std::string& method, const std::string& path,
                       const std::string& body = "", const std::vector<std::string>& headers = {},
                       double timeout_s = 60.0) const {
    return http_request(port_, method, path, body, headers, timeout_s);
  }

 private:
  fs::path model_dir_, data_dir_, log_path_;
  std::vector<std::string> extra_args_;
  int port_ = 0;
  pid_t pid_ = -1;
  int last_status_ = 0;
};

}  // namespace qsearch::testing
