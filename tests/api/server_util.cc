#include "server_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "embed/model/test_model.h"

extern char** environ;

namespace qsearch::testing {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A server may answer and close before a large request body is sent: the client must see
// EPIPE, not die of SIGPIPE.
static const bool kIgnoreSigpipe = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

static Clock::time_point deadline_in(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(seconds));
}

static std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string make_temp_dir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  return mkdtemp(tmpl.data()) ? tmpl : std::string();
}

ScratchDir::ScratchDir() : path_(make_temp_dir("qsearch-api")) {}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  if (!path_.empty()) fs::remove_all(path_, ec);
}

std::string test_model_dir(std::string* error) {
  const char* env = std::getenv("QSEARCH_TEST_MODEL");
  if (env && *env && fs::exists(fs::path(env) / "config.json")) return env;
  const std::string deps = QSEARCH_DEPS_DIR;
  const std::string dir = deps + "/test-model";
  if (fs::exists(dir + "/config.json") && fs::exists(dir + "/model.safetensors")) return dir;
  const std::string tokenizer = deps + "/qwen3/tokenizer.json";
  if (!fs::exists(tokenizer)) {
    *error = tokenizer + " is missing: run `make deps`";
    return "";
  }
  // Several test processes may get here at once: one writes, under a lock, into a temporary
  // directory that is renamed into place.
  int lock = ::open((deps + "/test-model.lock").c_str(), O_CREAT | O_RDWR, 0644);
  if (lock >= 0) flock(lock, LOCK_EX);
  std::string result = dir;
  if (!fs::exists(dir + "/config.json")) {
    std::string tmp = dir + ".tmp-" + std::to_string(getpid());
    TestModelOptions options;
    options.tokenizer_path = tokenizer;
    options.out_dir = tmp;
    auto written = write_test_model(options);
    if (!written.is_ok()) {
      *error = "writing the test model: " + written.status().to_string();
      result.clear();
    } else {
      std::error_code ec;
      fs::remove_all(dir, ec);
      fs::rename(tmp, dir, ec);
      if (ec) {
        *error = "renaming the test model into place: " + ec.message();
        result.clear();
      }
    }
  }
  if (lock >= 0) {
    flock(lock, LOCK_UN);
    ::close(lock);
  }
  return result;
}

std::string test_model_dir() {
  std::string error;
  std::string dir = test_model_dir(&error);
  if (dir.empty()) ADD_FAILURE() << error;
  return dir;
}

json HttpResult::json_body() const {
  return json::parse(body, nullptr, /*allow_exceptions=*/false);
}

std::string HttpResult::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? "" : it->second;
}

// ---- raw-socket client --------------------------------------------------------------------

int connect_loopback(int port, double timeout_s) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_s);
  tv.tv_usec = static_cast<suseconds_t>((timeout_s - static_cast<double>(tv.tv_sec)) * 1e6);
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

bool send_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// A server may keep a connection open after answering (e.g. a 414 sent before it could read
// "Connection: close"), so the body is delimited by its length rather than by EOF where possible.
HttpResult read_response(int fd) {
  std::string pending;
  return read_response(fd, &pending);
}

HttpResult read_response(int fd, std::string* pending) {
  HttpResult r;
  // From the current response head on (a 100 Continue is dropped from it); starts with what
  // an earlier call read past its response.
  std::string raw = std::move(*pending);
  pending->clear();
  r.raw = raw;
  char buf[65536];
  size_t head_end = std::string::npos;
  long long content_length = -1;
  bool chunked = false;
  // Where the response ends in raw (npos: not yet known to be complete).
  auto response_end = [&]() -> size_t {
    if (head_end == std::string::npos) return std::string::npos;
    size_t body_start = head_end + 4;
    if (content_length >= 0) {
      size_t end = body_start + static_cast<size_t>(content_length);
      return raw.size() >= end ? end : std::string::npos;
    }
    if (chunked) {
      if (raw.compare(body_start, 5, "0\r\n\r\n") == 0) return body_start + 5;
      size_t last = raw.find("\r\n0\r\n\r\n", body_start);
      return last == std::string::npos ? last : last + 7;
    }
    return std::string::npos;
  };
  // Parses the head(s) in raw; true once the response is complete.
  auto parse = [&]() {
    for (;;) {
      if (head_end == std::string::npos) {
        head_end = raw.find("\r\n\r\n");
        if (head_end == std::string::npos) return false;
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
          continue;
        }
      }
      return response_end() != std::string::npos;
    }
  };
  while (!parse()) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (n < 0 && raw.empty()) r.error = std::string("recv: ") + std::strerror(errno);
      break;
    }
    raw.append(buf, static_cast<size_t>(n));
    r.raw.append(buf, static_cast<size_t>(n));
  }
  // Bytes past this response (a pipelined answer) are kept for the next call.
  if (size_t end = response_end(); end != std::string::npos && end < raw.size()) {
    *pending = raw.substr(end);
    raw.resize(end);
  }
  auto body_complete = [&]() { return response_end() != std::string::npos; };
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
    size_t v = colon + 1;
    while (v < line.size() && line[v] == ' ') ++v;
    r.headers.emplace(line.substr(0, colon), line.substr(v));
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

HttpResult http_request(int port, const std::string& method, const std::string& path,
                        const std::string& body, const std::vector<std::string>& extra_headers,
                        double timeout_s) {
  HttpResult r;
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
  // The server may answer early (413) and close while we are still sending: read anyway.
  send_all(fd, req);
  // No shutdown(SHUT_WR): the server rightly takes a half-closed socket for a client that left
  // (and drops its work); we read until the server closes (Connection: close).
  r = read_response(fd);
  ::close(fd);
  return r;
}

std::string raw_exchange(int port, const std::string& request, double timeout_s) {
  int fd = connect_loopback(port, timeout_s);
  if (fd < 0) return "";
  send_all(fd, request);
  std::string out = read_response(fd).raw;
  ::close(fd);
  return out;
}

std::string url_encode(const std::string& s) {
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

// ---- the server ---------------------------------------------------------------------------

ServerProcess::ServerProcess(std::string data_dir, std::vector<std::string> extra_args,
                             std::map<std::string, std::string> env)
    : data_dir_(std::move(data_dir)), extra_args_(std::move(extra_args)), env_(std::move(env)) {
  static std::atomic<int> counter{0};
  log_path_ = data_dir_ + ".log." + std::to_string(counter++);
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) kill9();
}

bool ServerProcess::start(bool wait) {
  start_error_.clear();
  if (pid_ > 0) {
    start_error_ = "already running";
    return false;
  }
  std::string model = test_model_dir();  // fails the test, saying why, when there is none
  if (model.empty()) {
    start_error_ = "no test model";
    return false;
  }
  // --port 0: the server binds a free port and logs it; no race with other tests for a port.
  std::vector<std::string> args = {QSEARCH_BINARY, "serve",     "--model", model,
                                   "--device",     "cpu",       "--data-dir", data_dir_,
                                   "--host",       "127.0.0.1", "--port", "0",
                                   "--threads",    "2"};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e)
    if (std::string(*e).rfind("QSEARCH_", 0) != 0) env.emplace_back(*e);
  for (const auto& [k, v] : env_) env.push_back(k + "=" + v);
  // The log is appended to by every start of this object: look for the port after this offset.
  std::error_code ec;
  const uintmax_t size = fs::file_size(log_path_, ec);
  const size_t log_offset = ec ? 0 : static_cast<size_t>(size);

  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
    setpgid(0, 0);                     // nor get the terminal's Ctrl-C meant for the test
    int fd = ::open(log_path_.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  if (pid_ < 0) {
    start_error_ = std::string("fork: ") + std::strerror(errno);
    return false;
  }
  const std::string marker = "listening on http://127.0.0.1:";
  port_ = 0;
  const auto deadline = deadline_in(120);
  while (port_ == 0) {
    if (!running()) {
      start_error_ = "server exited during start-up (code " + std::to_string(exit_code_) +
                     "): " + log_tail();
      return false;
    }
    if (Clock::now() > deadline) {
      start_error_ = "no \"" + marker + "\" in the log within 120 s: " + log_tail();
      return false;
    }
    std::string text = log();
    size_t pos = text.find(marker, log_offset);
    if (pos != std::string::npos) port_ = std::atoi(text.c_str() + pos + marker.size());
    else std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (wait && !wait_ready()) {
    start_error_ = "server not ready within 120 s: " + log_tail();
    return false;
  }
  return true;
}

bool ServerProcess::wait_ready(double timeout_s) {
  const auto deadline = deadline_in(timeout_s);
  while (Clock::now() < deadline) {
    if (!running()) return false;
    if (request("GET", "/ready", "", {}, 5.0).status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

bool ServerProcess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    pid_ = -1;
    return false;
  }
  return true;
}

int ServerProcess::wait_exit(double timeout_s) {
  const auto deadline = deadline_in(timeout_s);
  while (Clock::now() < deadline) {
    if (!running()) return exit_code_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

int ServerProcess::stop(double timeout_s) {
  if (pid_ <= 0) return exit_code_;
  ::kill(pid_, SIGTERM);
  int rc = wait_exit(timeout_s);
  if (rc == -1) kill9();
  return rc;
}

void ServerProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  exit_code_ = 128 + SIGKILL;
  pid_ = -1;
}

std::string ServerProcess::log() const { return read_whole_file(log_path_); }

std::string ServerProcess::log_tail(size_t n) const {
  std::string l = log();
  return l.size() > n ? l.substr(l.size() - n) : l;
}

std::unique_ptr<httplib::Client> ServerProcess::client(const std::string& key,
                                                       double timeout_s) const {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
  auto secs = static_cast<time_t>(timeout_s);
  c->set_connection_timeout(5);
  c->set_read_timeout(secs);
  c->set_write_timeout(secs);
  if (!key.empty()) c->set_bearer_token_auth(key.c_str());
  return c;
}

static HttpResult to_result(const httplib::Result& r) {
  HttpResult out;
  if (!r) {
    out.error = "no response: " + httplib::to_string(r.error());
    out.body = out.error;
    return out;
  }
  out.status = r->status;
  out.body = r->body;
  out.headers = r->headers;
  return out;
}

HttpResult ServerProcess::get(const std::string& path, const std::string& key) const {
  return to_result(client(key, 60)->Get(path.c_str()));
}

HttpResult ServerProcess::del(const std::string& path, const std::string& key) const {
  return to_result(client(key, 60)->Delete(path.c_str()));
}

HttpResult ServerProcess::post(const std::string& path, const std::string& body,
                               const std::string& key, double timeout_s) const {
  return to_result(client(key, timeout_s)->Post(path.c_str(), body, "application/json"));
}

HttpResult ServerProcess::put(const std::string& path, const json& body,
                              const std::string& key) const {
  return to_result(client(key, 60)->Put(path.c_str(), body.dump(), "application/json"));
}

double ServerProcess::metric(const std::string& name_with_labels, const std::string& key) const {
  HttpResult r = get("/metrics", key);
  std::istringstream in(r.body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name_with_labels + " ", 0) == 0)
      return std::stod(line.substr(name_with_labels.size() + 1));
  }
  return -1;
}

}  // namespace qsearch::testing
