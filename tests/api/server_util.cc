#include "server_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "embed/model/test_model.h"

extern char** environ;

namespace qsearch::testing {
namespace fs = std::filesystem;

// A server may answer and close before a large request body is sent: the client must see
// EPIPE, not die of SIGPIPE.
static const bool kIgnoreSigpipe = [] {
  signal(SIGPIPE, SIG_IGN);
  return true;
}();

ScratchDir::ScratchDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/qsearch-api-XXXXXX";
  if (char* p = mkdtemp(tmpl.data())) path_ = p;
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  if (!path_.empty()) fs::remove_all(path_, ec);
}

std::string test_model_dir() {
  const std::string deps = QSEARCH_DEPS_DIR;
  const std::string dir = deps + "/test-model";
  if (fs::exists(dir + "/config.json") && fs::exists(dir + "/model.safetensors")) return dir;
  const std::string tokenizer = deps + "/qwen3/tokenizer.json";
  if (!fs::exists(tokenizer)) {
    ADD_FAILURE() << tokenizer << " is missing: run `make deps`";
    return dir;
  }
  // Several test processes may get here at once: one writes, under a lock, into a temporary
  // directory that is renamed into place.
  int lock = ::open((deps + "/test-model.lock").c_str(), O_CREAT | O_RDWR, 0644);
  if (lock >= 0) flock(lock, LOCK_EX);
  if (!fs::exists(dir + "/config.json")) {
    std::string tmp = dir + ".tmp-" + std::to_string(getpid());
    TestModelOptions options;
    options.tokenizer_path = tokenizer;
    options.out_dir = tmp;
    auto written = write_test_model(options);
    if (!written.is_ok()) {
      ADD_FAILURE() << "writing the test model: " << written.status().to_string();
    } else {
      std::error_code ec;
      fs::remove_all(dir, ec);
      fs::rename(tmp, dir, ec);
      if (ec) ADD_FAILURE() << "renaming the test model into place: " << ec.message();
    }
  }
  if (lock >= 0) {
    flock(lock, LOCK_UN);
    ::close(lock);
  }
  return dir;
}

json HttpResult::json_body() const {
  return json::parse(body, nullptr, /*allow_exceptions=*/false);
}

std::string HttpResult::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? "" : it->second;
}

std::string raw_exchange(int port, const std::string& request, double timeout_s) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  timeval tv{static_cast<time_t>(timeout_s), static_cast<suseconds_t>((timeout_s - (time_t)timeout_s) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    // Stop once a complete response with a Content-Length body is in.
    auto head_end = out.find("\r\n\r\n");
    auto cl = out.find("Content-Length: ");
    if (head_end != std::string::npos && cl != std::string::npos && cl < head_end) {
      size_t len = std::stoul(out.substr(cl + 16));
      if (out.size() >= head_end + 4 + len) break;
    }
  }
  close(fd);
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

ServerProcess::ServerProcess(std::string data_dir, std::vector<std::string> extra_args,
                             std::map<std::string, std::string> env)
    : data_dir_(std::move(data_dir)), extra_args_(std::move(extra_args)), env_(std::move(env)) {
  static std::atomic<int> counter{0};
  log_path_ = data_dir_ + ".log." + std::to_string(counter++);
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) kill9();
  std::error_code ec;
  fs::remove(log_path_, ec);
}

bool ServerProcess::start(bool wait) {
  // --port 0: the server binds a free port and logs it; no race with other tests for a port.
  std::string model = test_model_dir();
  std::vector<std::string> args = {QSEARCH_BINARY, "serve",     "--model", model,
                                   "--device",     "cpu",       "--data-dir", data_dir_,
                                   "--host",       "127.0.0.1", "--port", "0",
                                   "--threads",    "2"};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e)
    if (std::string(*e).rfind("QSEARCH_", 0) != 0) env.emplace_back(*e);
  for (const auto& [k, v] : env_) env.push_back(k + "=" + v);

  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
    int fd = ::open(log_path_.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  if (pid_ < 0) return false;
  const std::string marker = "listening on http://127.0.0.1:";
  port_ = 0;
  for (int i = 0; i < 6000 && port_ == 0; ++i) {  // up to 60 s
    std::string text = log();
    auto pos = text.rfind(marker);
    if (pos != std::string::npos) {
      port_ = std::atoi(text.c_str() + pos + marker.size());
      break;
    }
    if (!running()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (port_ == 0) return false;
  return wait ? wait_ready() : true;
}

bool ServerProcess::wait_ready(double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return false;
    if (get("/ready").status == 200) return true;
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
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (!running()) return exit_code_;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

int ServerProcess::stop() {
  if (pid_ <= 0) return exit_code_;
  ::kill(pid_, SIGTERM);
  int rc = wait_exit(60);
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

std::string ServerProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
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
    out.body = "no response: " + httplib::to_string(r.error());
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
