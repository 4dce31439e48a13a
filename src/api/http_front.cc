// Boost.Beast/Asio transport; see http_front.h for the model and the limits.
#include "api/http_front.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "api/errors.h"

namespace qsearch::api {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using error_code = boost::system::error_code;

// Longest path (before '?') a request may have: 414 above. Ids are at most 512 bytes, three
// times that URL-encoded; the route regexes never see more.
constexpr size_t kMaxPathBytes = 4096;
// Body bytes read per step (buffered bodies and ContentReader chunks).
constexpr size_t kChunkBytes = 64 * 1024;
// A connection that will be closed after its response (an unread body, a refused connection)
// is half-closed and drained for this long so that the client reads the answer instead of a
// reset; at most kLingerBytes are read.
constexpr auto kLinger = std::chrono::seconds(3);
constexpr uint64_t kLingerBytes = 64ull << 20;
// A request refused before its body (401, 404, 415, ...) with a Content-Length up to this
// is drained and the connection kept; larger bodies are not read (the connection closes).
constexpr uint64_t kDrainBytes = 64 * 1024;
const char* kUnmatched = "(unmatched)";

// Methods the routes use keep their name in records and metrics; any other is "OTHER", so a
// client cannot create metric labels.
std::string method_label(std::string_view m) {
  for (const char* known : {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
    if (m == known) return known;
  return "OTHER";
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
          c == ':'))
      return false;
  return true;
}

std::string new_request_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id(32, '0');
  uint64_t a = rng(), b = rng();
  for (int i = 0; i < 16; ++i) {
    id[i] = hex[(a >> (4 * i)) & 15];
    id[16 + i] = hex[(b >> (4 * i)) & 15];
  }
  return id;
}

// The bounded worker pool: http_threads threads, one FIFO queue (arrival order is service
// order, so no connection is starved).
class WorkerPool {
 public:
  explicit WorkerPool(int threads) {
    for (int i = 0; i < threads; ++i)
      threads_.emplace_back([this] {
        for (;;) {
          std::function<void()> job;
          {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return done_ || !jobs_.empty(); });
            if (jobs_.empty()) return;
            job = std::move(jobs_.front());
            jobs_.pop_front();
          }
          job();
        }
      });
  }
  ~WorkerPool() { shutdown(); }
  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }
  // Runs what is queued, then joins.
  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  bool done_ = false;
};

class Session;

}  // namespace

struct HttpFront::Impl {
  Impl(const ServerConfig& c, HttpApp* a, MemoryBudget* b)
      : config(c),
        app(a),
        budget(b),
        acceptor(net::make_strand(ioc)),
        retry_timer(acceptor.get_executor()) {}

  ServerConfig config;
  HttpApp* app;
  MemoryBudget* budget;
  // Declared before ioc: handlers destroyed with ioc may hold the last reference to a
  // session, whose destructor uses these.
  std::mutex mu;  // guards per_client and sessions
  std::unordered_map<std::string, int> per_client;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions;
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> connections{0}, in_flight{0}, refused{0}, refusing{0};
  net::io_context ioc;
  tcp::acceptor acceptor;         // on a strand: stop() closes it from another thread
  net::steady_timer retry_timer;  // accept retry after EMFILE and the like
  std::unique_ptr<WorkerPool> pool;
  int port = 0;

  void do_accept();
  void on_accept(error_code ec, tcp::socket socket);
  void refuse(tcp::socket socket, const std::string& why);
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(HttpFront::Impl* front, tcp::socket socket, std::string addr, int port)
      : front_(front),
        config_(front->config),
        stream_(std::move(socket)),
        buffer_(static_cast<size_t>(config_.max_header_bytes) + kChunkBytes),
        addr_(std::move(addr)),
        port_(port) {}

  ~Session() {
    std::lock_guard<std::mutex> lock(front_->mu);
    auto it = front_->per_client.find(addr_);
    if (it != front_->per_client.end() && --it->second <= 0) front_->per_client.erase(it);
    front_->sessions.erase(this);
    front_->connections--;
  }

  void start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->wait_request(); });
  }

  // stop(): closes the connection unless a request is running or being answered.
  void stop_if_idle() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      if (self->state_ != State::kHandling && self->state_ != State::kWriting) self->close();
    });
  }

 private:
  enum class State { kIdle, kHead, kBody, kHandling, kWriting, kLinger, kClosed };

  // ---- reading the head -----------------------------------------------------------------

  // Waits for the first byte of the next request (keep_alive_timeout); the head deadline
  // starts there.
  void wait_request() {
    state_ = State::kIdle;
    if (front_->stopping) return close();
    if (buffer_.size() > 0) return read_head();  // pipelined
    buffer_.shrink_to_fit();
    stream_.expires_after(std::chrono::seconds(config_.keep_alive_timeout));
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              if (ec) return self->close();
                              self->buffer_.commit(n);
                              self->read_head();
                            });
  }

  void read_head() {
    state_ = State::kHead;
    t0_ = Clock::now();
    req_ = std::make_unique<HttpRequest>();
    early_.reset();
    req_->remote_addr = addr_;
    req_->remote_port = port_;
    body_.clear();
    body_bytes_ = 0;
    continue_sent_ = false;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(config_.max_header_bytes));
    // The app's limit is enforced while reading. (Not boost::none: Beast 1.74 compares the
    // length with the empty optional and refuses every body.)
    parser_->body_limit(std::numeric_limits<uint64_t>::max());
    stream_.expires_at(t0_ + std::chrono::seconds(config_.head_timeout));
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](error_code ec, size_t) { self->on_head(ec); });
  }

  void on_head(error_code ec) {
    if (ec) {
      spdlog::trace("head failed: {}", ec.message());
      if (ec == http::error::header_limit)
        return fail(431, "headers_too_large",
                    "request head larger than " + std::to_string(config_.max_header_bytes) +
                        " bytes (max_header_bytes)");
      if (ec == beast::error::timeout) {
        record_closed(408);
        return close();
      }
      if (ec == http::error::bad_content_length)
        return fail(400, "invalid_request",
                    "invalid Content-Length: it must be one non-negative decimal integer, and "
                    "not sent with Transfer-Encoding");
      if (ec == http::error::bad_transfer_encoding)
        return fail(400, "invalid_request",
                    "invalid Transfer-Encoding: only one, \"chunked\", and not with "
                    "Content-Length");
      if (ec == http::error::bad_field || ec == http::error::bad_value ||
          ec == http::error::bad_line_ending || ec == http::error::bad_obs_fold)
        return fail(400, "invalid_request",
                    "malformed header field (names are tokens; values may not contain control "
                    "characters such as NUL)");
      if (ec == http::error::bad_method || ec == http::error::bad_target ||
          ec == http::error::bad_version)
        return fail(400, "invalid_request", "malformed request line");
      if (ec == http::error::buffer_overflow)
        return fail(431, "headers_too_large", "request head too large");
      // End of stream, reset, partial head: nobody to answer.
      return close();
    }
    check_head();
  }

  // What Beast accepts but the API does not, then the request for the app.
  void check_head() {
    auto& msg = parser_->get();
    size_t fields = 0, content_lengths = 0, transfer_encodings = 0;
    std::string cl_value, te_value;
    for (const auto& f : msg) {
      ++fields;
      std::string_view value(f.value().data(), f.value().size());
      for (char c : value)
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
          return fail(400, "invalid_request",
                      "header values may not contain control characters such as NUL");
      if (f.name() == http::field::content_length) {
        ++content_lengths;
        cl_value = std::string(value);
      } else if (f.name() == http::field::transfer_encoding) {
        ++transfer_encodings;
        te_value = std::string(value);
      }
    }
    if (fields > static_cast<size_t>(config_.max_header_count))
      return fail(431, "headers_too_large",
                  "more than " + std::to_string(config_.max_header_count) +
                      " header fields (max_header_count)");
    if (content_lengths > 1)
      return fail(400, "invalid_request", "more than one Content-Length header");
    if (content_lengths == 1) {
      bool digits = !cl_value.empty() && cl_value.size() <= 19;
      for (char c : cl_value) digits = digits && c >= '0' && c <= '9';
      if (!digits)
        return fail(400, "invalid_request",
                    "Content-Length must be one non-negative decimal integer");
    }
    if (transfer_encodings > 0 && content_lengths > 0)
      return fail(400, "invalid_request", "Content-Length and Transfer-Encoding together");
    if (transfer_encodings > 1 || (transfer_encodings == 1 && !beast::iequals(te_value, "chunked")))
      return fail(501, "not_implemented", "only Transfer-Encoding: chunked is supported");

    std::string_view method(msg.method_string().data(), msg.method_string().size());
    req_->method = std::string(method);
    std::string_view target(msg.target().data(), msg.target().size());
    if (target.empty() || target[0] != '/')
      return fail(400, "invalid_request", "the request target must be a path (origin-form)");
    size_t q = target.find('?');
    std::string_view raw_path = target.substr(0, q);
    if (raw_path.size() > kMaxPathBytes)
      return fail(414, "uri_too_long",
                  "path longer than " + std::to_string(kMaxPathBytes) + " bytes");
    if (msg.method() == http::verb::unknown)
      return fail(501, "not_implemented",
                  "method not implemented (GET, HEAD, POST, PUT, DELETE, PATCH are)");

    HttpRequest& r = *req_;
    r.target = std::string(target);
    r.path = url_decode(std::string(raw_path), false);
    if (q != std::string_view::npos) {
      std::string_view query = target.substr(q + 1);
      while (!query.empty()) {
        size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        if (!pair.empty()) {
          size_t eq = pair.find('=');
          std::string key(pair.substr(0, eq));
          std::string val = eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1));
          r.params.emplace(url_decode(key, true), url_decode(val, true));
        }
        if (amp == std::string_view::npos) break;
        query = query.substr(amp + 1);
      }
    }
    for (const auto& f : msg)
      r.headers.emplace(std::string(f.name_string()), std::string(f.value()));
    std::string id = r.get_header_value("X-Request-Id");
    // Generated here when absent or invalid, so that the log lines of its handling carry it.
    r.request_id = valid_request_id(id) ? id : new_request_id();
    r.chunked = parser_->chunked();
    r.content_length = parser_->content_length().value_or(0);
    r.has_body = r.chunked || r.content_length > 0;
    int fd = stream_.socket().native_handle();
    auto closed = closed_;
    // Whether the client left, for dropping its queued work. A reset always counts. The end
    // of its stream (FIN) counts for reads only, as in Go's net/http and nginx: a client that
    // half-closes after sending a write still gets the write done and acknowledged (it can
    // read the answer); a read's work is dropped and answered 499.
    HttpRequest* self_req = &r;
    r.client_gone = [fd, closed, self_req] {
      if (closed->load()) return true;
      pollfd p{fd, static_cast<short>(POLLIN | POLLRDHUP), 0};
      if (poll(&p, 1, 0) <= 0) return false;
      if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) return true;
      if (self_req->writes) return false;
      if (p.revents & POLLRDHUP) return true;
      if (p.revents & POLLIN) {  // a pipelined request (still there) or the end of the stream
        char c;
        return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
      }
      return false;
    };
    admit();
  }

  void admit() {
    HttpResponse res;
    Admission a;
    try {
      a = front_->app->admit(*req_, res);
    } catch (const std::exception& e) {
      spdlog::error("admit {}: {}", req_->path, e.what());
      res = HttpResponse();
      res.status = 500;
      res.set_content(error_body("internal", "unexpected error"), "application/json");
      a.action = Admission::kRespond;
    }
    switch (a.action) {
      case Admission::kRespond:
        // A small body is read and dropped first, so that the connection stays usable (a
        // pipelined request after it is answered); with a larger or unknown one the answer
        // comes at once and the connection is closed (the body would be taken for the next
        // request).
        if (req_->has_body && !parser_->is_done() && !req_->chunked &&
            req_->content_length <= kDrainBytes && !expects_continue()) {
          early_ = std::move(res);
          body_limit_ = kDrainBytes;
          return read_body();
        }
        return respond(std::move(res), req_->has_body && !parser_->is_done());
      case Admission::kBuffer:
        body_limit_ = a.max_body;
        if (!req_->chunked && req_->content_length > body_limit_)
          return fail(413, "payload_too_large",
                      "request body of " + std::to_string(req_->content_length) +
                          " bytes is over the limit of " + std::to_string(body_limit_));
        body_mem_ = Reservation(front_->budget);
        if (!body_mem_.grow(static_cast<int64_t>(req_->content_length))) return busy();
        return send_continue([self = shared_from_this()] { self->read_body(); });
      case Admission::kStream:
        return send_continue([self = shared_from_this()] { self->dispatch(true); });
    }
  }

  bool expects_continue() const {
    return req_->has_body && parser_->get().version() >= 11 &&
           beast::iequals(req_->get_header_value("Expect"), "100-continue");
  }

  // "Expect: 100-continue": the client waits for this before sending the body.
  template <typename Next>
  void send_continue(Next next) {
    if (!expects_continue()) return next();
    static const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    continue_sent_ = true;
    stream_.expires_after(std::chrono::seconds(config_.write_timeout));
    net::async_write(stream_, net::buffer(kContinue),
                     [self = shared_from_this(), next](error_code ec, size_t) mutable {
                       if (ec) {
                         spdlog::trace("continue failed: {}", ec.message());
                         return self->close();
                       }
                       next();
                     });
  }

  // ---- reading the body -----------------------------------------------------------------

  // The body's deadline: no read may stall read_timeout seconds, and after read_timeout
  // seconds of grace the average rate must be at least min_body_rate bytes/s.
  Clock::time_point body_deadline() const {
    auto stall = Clock::now() + std::chrono::seconds(config_.read_timeout);
    if (config_.min_body_rate <= 0) return stall;
    auto rate = body_t0_ + std::chrono::seconds(config_.read_timeout) +
                std::chrono::microseconds(static_cast<int64_t>(
                    1e6 * static_cast<double>(body_bytes_) / config_.min_body_rate));
    return std::min(stall, rate);
  }

  // One read of body bytes into chunk (on the strand); done(ec, n).
  template <typename Done>
  void read_body_some(std::vector<char>* chunk, Done done) {
    if (parser_->is_done()) return done(error_code{}, 0);
    auto& b = parser_->get().body();
    b.data = chunk->data();
    b.size = chunk->size();
    b.more = true;
    stream_.expires_at(body_deadline());
    http::async_read_some(stream_, buffer_, *parser_,
                          [self = shared_from_this(), chunk, done](error_code ec, size_t) mutable {
                            if (ec == http::error::need_buffer) ec = {};
                            done(ec, chunk->size() - self->parser_->get().body().size);
                          });
  }

  void read_body() {
    state_ = State::kBody;
    if (body_bytes_ == 0) body_t0_ = Clock::now();
    if (parser_->is_done()) {
      if (!early_) return dispatch(false);
      HttpResponse res = std::move(*early_);
      early_.reset();
      return respond(std::move(res), false);
    }
    chunk_.resize(kChunkBytes);
    read_body_some(&chunk_, [this, self = shared_from_this()](error_code ec, size_t n) {
      if (ec) {
        spdlog::trace("body read failed: {}", ec.message());
        record_closed(ec == beast::error::timeout ? 408 : 400);
        return close();
      }
      body_bytes_ += n;
      if (body_bytes_ > body_limit_)
        return fail(413, "payload_too_large",
                    "request body is over the limit of " + std::to_string(body_limit_) + " bytes");
      if (!early_) {
        // Chunked bodies are held in the budget as they grow (a Content-Length was taken whole).
        if (req_->chunked && !body_mem_.grow(static_cast<int64_t>(n))) return busy();
        body_.append(chunk_.data(), n);
      }
      read_body();
    });
  }

  // Worker thread (streamed routes): the next chunks of the body, read on the strand.
  bool pull_body(const ContentReceiver& receiver) {
    std::vector<char> chunk(kChunkBytes);
    {
      std::promise<void> started;
      net::post(stream_.get_executor(), [&] {
        if (body_bytes_ == 0) body_t0_ = Clock::now();
        started.set_value();
      });
      started.get_future().wait();
    }
    for (;;) {
      std::promise<std::pair<error_code, size_t>> p;
      auto f = p.get_future();
      net::post(stream_.get_executor(), [&] {
        read_body_some(&chunk, [&p](error_code ec, size_t n) { p.set_value({ec, n}); });
      });
      auto [ec, n] = f.get();
      if (ec) return false;
      body_bytes_ += n;
      if (n > 0 && !receiver(chunk.data(), n)) return false;
      if (parser_->is_done()) return true;
    }
  }

  // ---- running the request --------------------------------------------------------------

  void dispatch(bool streamed) {
    state_ = State::kHandling;
    chunk_.clear();
    chunk_.shrink_to_fit();
    front_->in_flight++;
    // The io_context must not run out of work while the request runs on a worker.
    auto work = std::make_shared<net::executor_work_guard<net::io_context::executor_type>>(
        front_->ioc.get_executor());
    front_->pool->post([self = shared_from_this(), streamed, work]() mutable {
      HttpResponse res;
      ContentReader reader;
      if (streamed) reader = [s = self.get()](const ContentReceiver& r) { return s->pull_body(r); };
      try {
        self->front_->app->handle(*self->req_, self->body_, streamed ? &reader : nullptr, res);
      } catch (const std::exception& e) {
        spdlog::error("{} {}: unexpected exception: {}", self->req_->method, self->req_->path,
                      e.what());
        res = HttpResponse();
        res.status = 500;
        res.set_content(error_body("internal", "unexpected error"), "application/json");
      }
      self->body_.clear();
      self->body_.shrink_to_fit();
      self->body_mem_.reset();
      net::post(self->stream_.get_executor(), [self, res = std::move(res)]() mutable {
        self->front_->in_flight--;
        self->respond(std::move(res), !self->parser_->is_done());
      });
      work->reset();
    });
  }

  // ---- answering --------------------------------------------------------------------------

  // An error found by the front: answered, then the connection is closed.
  void fail(int status, const std::string& code, const std::string& message) {
    HttpResponse res;
    res.status = status;
    res.set_content(error_body(code, message), "application/json");
    if (status == 503) res.set_header("Retry-After", "1");
    respond(std::move(res), true);
  }

  static std::string busy_message(const MemoryBudget& b) {
    return "server busy: in-flight requests hold " + std::to_string(b.used()) + " of " +
           std::to_string(b.limit()) + " bytes (max_inflight_bytes); retry later";
  }

  void busy() {
    body_.clear();
    body_mem_.reset();
    fail(503, "unavailable", busy_message(*front_->budget));
  }

  RequestRecord record(int status, uint64_t bytes_out) const {
    RequestRecord rec;
    rec.request_id = req_ ? req_->request_id : "";
    rec.client_address = addr_;
    rec.method = method_label(req_ ? req_->method : "");
    rec.route = req_ ? req_->route : kUnmatched;
    rec.status = status;
    rec.bytes_in = body_bytes_;
    rec.bytes_out = bytes_out;
    rec.latency_s = std::chrono::duration<double>(Clock::now() - t0_).count();
    rec.key_role = req_ ? req_->key_role : "none";
    rec.collection = req_ ? req_->collection : "";
    return rec;
  }

  // A request that ends without a response (timed out or broken mid-request).
  void record_closed(int status) {
    if (!req_) return;
    RequestRecord rec = record(status, 0);
    rec.status = status;
    front_->app->finished(rec);
  }

  void respond(HttpResponse res, bool close_after) {
    state_ = State::kWriting;
    if (res.status < 0) res.status = 200;
    // The response is held in the budget until written; one that does not fit is dropped
    // for a 503 (only reads have large answers: nothing is lost by retrying).
    out_mem_ = Reservation(front_->budget);
    if (req_ && req_->writes) {
      out_mem_.force_grow(static_cast<int64_t>(res.body.size()));
    } else if (!out_mem_.grow(static_cast<int64_t>(res.body.size()))) {
      std::string message = busy_message(*front_->budget);
      res = HttpResponse();
      res.status = 503;
      res.set_header("Retry-After", "1");
      res.set_content(error_body("unavailable", message), "application/json");
    }
    if (req_ && req_->request_id.empty()) req_->request_id = new_request_id();
    unsigned version = parser_ && parser_->is_header_done() ? parser_->get().version() : 11;
    bool head = req_ && req_->method == "HEAD";
    keep_alive_ = !close_after && !front_->stopping && parser_ && parser_->is_header_done() &&
                  parser_->get().keep_alive();
    out_.emplace();
    out_->version(version < 10 ? 11 : version);
    out_->result(static_cast<unsigned>(res.status));
    if (res.status == 499) out_->reason("Client Closed Request");
    for (const auto& [name, value] : res.headers) out_->insert(name, value);
    if (!res.content_type.empty()) out_->set(http::field::content_type, res.content_type);
    if (req_) out_->set("X-Request-Id", req_->request_id);
    uint64_t bytes_out = res.body.size();
    out_->body() = head ? std::string() : std::move(res.body);
    out_->prepare_payload();
    if (head) out_->content_length(bytes_out);
    out_->keep_alive(keep_alive_);
    front_->app->finished(record(res.status, head ? 0 : bytes_out));
    stream_.expires_after(std::chrono::seconds(config_.write_timeout));
    http::async_write(stream_, *out_, [self = shared_from_this()](error_code ec, size_t) {
      self->out_.reset();
      self->out_mem_.reset();
      if (ec) {
        spdlog::trace("write failed: {}", ec.message());
        return self->close();
      }
      if (!self->keep_alive_) return self->linger();
      self->wait_request();
    });
  }

  // Half-closes and drains what the client still sends, so that it reads the answer.
  void linger() {
    state_ = State::kLinger;
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return close();
    buffer_.consume(buffer_.size());
    stream_.expires_after(kLinger);
    linger_read();
  }

  void linger_read() {
    chunk_.resize(kChunkBytes);
    stream_.async_read_some(net::buffer(chunk_),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              self->lingered_ += n;
                              if (ec || self->lingered_ > kLingerBytes) return self->close();
                              self->linger_read();
                            });
  }

  void close() {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    closed_->store(true);
    error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

  HttpFront::Impl* front_;
  const ServerConfig& config_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::string addr_;
  int port_;
  State state_ = State::kIdle;
  std::optional<http::request_parser<http::buffer_body>> parser_;
  std::unique_ptr<HttpRequest> req_;
  std::string body_;
  std::vector<char> chunk_;
  uint64_t body_bytes_ = 0, body_limit_ = 0, lingered_ = 0;
  Clock::time_point t0_ = Clock::now(), body_t0_ = Clock::now();
  bool continue_sent_ = false, keep_alive_ = false;
  std::optional<http::response<http::string_body>> out_;
  std::optional<HttpResponse> early_;
  Reservation body_mem_, out_mem_;  // the request and response bodies in max_inflight_bytes  // an
                                    // answer given before the body, sent once it is drained
  std::shared_ptr<std::atomic<bool>> closed_ = std::make_shared<std::atomic<bool>>(false);
};

std::string peer_address(const tcp::socket& s, int* port) {
  error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return "";
  *port = ep.port();
  auto a = ep.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return net::ip::make_address_v4(net::ip::v4_mapped, a.to_v6()).to_string();
  return a.to_string();
}

}  // namespace

void HttpFront::Impl::do_accept() {
  acceptor.async_accept(net::make_strand(ioc), [this](error_code ec, tcp::socket socket) {
    on_accept(ec, std::move(socket));
  });
}

void HttpFront::Impl::on_accept(error_code ec, tcp::socket socket) {
  if (stopping || !acceptor.is_open()) return;
  if (ec) {
    // Out of descriptors and the like: try again shortly instead of spinning.
    if (ec != net::error::operation_aborted) spdlog::warn("accept failed: {}", ec.message());
    retry_timer.expires_after(std::chrono::milliseconds(100));
    retry_timer.async_wait([this](error_code) {
      if (!stopping) do_accept();
    });
    return;
  }
  do_accept();
  socket.set_option(tcp::no_delay(true), ec);
  int peer_port = 0;
  std::string addr = peer_address(socket, &peer_port);
  std::shared_ptr<Session> session;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (connections >= config.max_connections)
      return refuse(std::move(socket), "the server has " + std::to_string(config.max_connections) +
                                           " connections open (max_connections)");
    int& mine = per_client[addr];
    if (mine >= config.max_connections_per_client) {
      if (mine == 0) per_client.erase(addr);
      return refuse(std::move(socket), "this client address has " +
                                           std::to_string(config.max_connections_per_client) +
                                           " connections open (max_connections_per_client)");
    }
    ++mine;
    connections++;
    session = std::make_shared<Session>(this, std::move(socket), addr, peer_port);
    sessions.emplace(session.get(), session);
  }
  session->start();
}

// At a connection cap: a fixed 503 with Retry-After, written once, then the socket is closed
// after a short drain (at most 2 s). Beyond 64 refusals in progress, connections are closed
// at once.
void HttpFront::Impl::refuse(tcp::socket socket, const std::string& why) {
  refused++;
  if (refusing >= 64) {
    error_code ec;
    socket.close(ec);
    return;
  }
  refusing++;
  struct Refusal {
    Refusal(tcp::socket s, std::string t)
        : socket(std::move(s)), text(std::move(t)), timer(socket.get_executor()) {}
    tcp::socket socket;
    std::string text;
    std::array<char, 4096> sink{};
    net::steady_timer timer;
    std::atomic<int64_t>* refusing = nullptr;
    void read() {
      socket.async_read_some(net::buffer(sink), [this, keep = self](error_code ec, size_t) {
        if (ec) return done();
        read();
      });
    }
    void done() {
      error_code ec;
      timer.cancel();
      socket.close(ec);
      (*refusing)--;
      self.reset();  // the last reference: freed when this handler returns
    }
    std::shared_ptr<Refusal> self;
  };
  std::string body = error_body("unavailable", "too many connections: " + why + "; retry later");
  auto r = std::make_shared<Refusal>(
      std::move(socket),
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
      "Connection: close\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\n\r\n" + body);
  r->refusing = &refusing;
  r->self = r;
  Refusal* p = r.get();
  net::dispatch(p->socket.get_executor(), [p] {
    p->timer.expires_after(std::chrono::seconds(2));
    p->timer.async_wait([p](error_code ec) {
      if (ec) return;
      error_code e2;
      p->socket.close(e2);  // the pending read or write fails and finishes the refusal
    });
    net::async_write(p->socket, net::buffer(p->text), [p](error_code ec, size_t) {
      if (ec) return p->done();
      error_code e2;
      p->socket.shutdown(tcp::socket::shutdown_send, e2);
      p->read();
    });
  });
}

HttpFront::HttpFront(const ServerConfig& config, HttpApp* app, MemoryBudget* budget)
    : impl_(std::make_unique<Impl>(config, app, budget)) {
  // Every connection is a descriptor: raise the soft limit to the hard one.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
      rl.rlim_cur < static_cast<rlim_t>(config.max_connections) + 256)
    spdlog::warn("max_connections {} is close to the open-file limit {} (ulimit -n)",
                 config.max_connections, static_cast<uint64_t>(rl.rlim_cur));
}

HttpFront::~HttpFront() {
  stop();
  if (impl_->pool) impl_->pool->shutdown();
}

Status HttpFront::bind() {
  Impl& s = *impl_;
  error_code ec;
  tcp::resolver resolver(s.ioc);
  auto results =
      resolver.resolve(s.config.host, std::to_string(s.config.port), tcp::resolver::passive, ec);
  const std::string where = s.config.host + ":" + std::to_string(s.config.port);
  if (ec || results.empty())
    return unavailable("cannot listen on " + where + ": cannot resolve the host");
  tcp::endpoint ep = results.begin()->endpoint();
  s.acceptor.open(ep.protocol(), ec);
  // SO_REUSEADDR only (no SO_REUSEPORT): a second server on a port in use must fail.
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(ep, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    error_code ignored;
    s.acceptor.close(ignored);
    return unavailable("cannot listen on " + where +
                       " (address in use or not local?): " + ec.message());
  }
  s.port = s.acceptor.local_endpoint(ec).port();
  return Status::ok();
}

int HttpFront::port() const { return impl_->port; }

bool HttpFront::listen() {
  Impl& s = *impl_;
  if (!s.acceptor.is_open()) return false;
  s.pool = std::make_unique<WorkerPool>(s.config.http_threads);
  if (s.stopping) return true;
  s.do_accept();
  std::vector<std::thread> io;
  for (int i = 1; i < s.config.http_io_threads; ++i) io.emplace_back([&s] { s.ioc.run(); });
  s.ioc.run();
  for (auto& t : io) t.join();
  s.pool->shutdown();
  return true;
}

void HttpFront::stop() {
  Impl& s = *impl_;
  bool was = s.stopping.exchange(true);
  if (!was) {
    net::post(s.ioc, [&s] {
      error_code ec;
      s.acceptor.close(ec);
      s.retry_timer.cancel();
    });
  }
  // Idle connections close now; running requests close after their response. (Repeated
  // calls catch connections that went idle since.)
  std::vector<std::shared_ptr<Session>> live;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    for (auto& [p, w] : s.sessions)
      if (auto sp = w.lock()) live.push_back(std::move(sp));
  }
  for (auto& sp : live) sp->stop_if_idle();
}

int64_t HttpFront::open_connections() const { return impl_->connections.load(); }
int64_t HttpFront::requests_in_flight() const { return impl_->in_flight.load(); }
int64_t HttpFront::connections_refused() const { return impl_->refused.load(); }

}  // namespace qsearch::api
