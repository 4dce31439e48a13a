#include "api/server.h"

#include <chrono>
#include <regex>

#include <spdlog/spdlog.h>

#include "api/errors.h"
#include "api/http.h"
#include "api/routes.h"
#include "service/service.h"

namespace qsearch::api {
namespace {

// Paths longer than this are refused before any regex runs (ids are at most 512 bytes, three
// times that URL-encoded). std::regex is recursive; this bounds its depth.
constexpr size_t kMaxPathBytes = 4096;
const char* kUnmatched = "(unmatched)";

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

bool key_in(const std::string& key, const std::vector<std::string>& keys) {
  bool found = false;
  for (const auto& k : keys) found |= constant_time_equal(key, k);
  return found;
}

void write_error(httplib::Response& res, int status, const std::string& code,
                 const std::string& message) {
  res.status = status;
  res.set_content(error_body(code, message), "application/json");
}

bool has_body(const httplib::Request& req) {
  return (req.has_header("Content-Length") && req.get_header_value<uint64_t>("Content-Length") > 0) ||
         req.get_header_value("Transfer-Encoding").find("chunked") != std::string::npos;
}

// Reads and discards a body the route did not read (an early error, a body on DELETE), so the
// connection stays usable: unread bytes would be parsed as the next request. Bodies announced
// larger than the limit are left alone.
void drain_body(const httplib::Request& req, const httplib::ContentReader* reader,
                uint64_t limit) {
  if (!reader || !has_body(req)) return;
  if (req.has_header("Content-Length") && req.get_header_value<uint64_t>("Content-Length") > limit)
    return;
  uint64_t n = 0;
  (*reader)([&](const char*, size_t len) {
    n += len;
    return n <= limit;
  });
}

}  // namespace

json RequestContext::json_body() const {
  json j = value_or_throw(parse_json(body));
  require_object(j, "the request body");
  return j;
}

void RequestContext::reply(int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

std::string checked_path_id(const std::string& value, const char* what) {
  if (invalid_utf8_offset(value) != std::string::npos)
    throw StatusException(invalid_argument(std::string(what) + " in the path is not valid UTF-8"));
  if (value.size() > kMaxIdBytes)
    throw StatusException(unprocessable(std::string(what) + " is " + std::to_string(value.size()) +
                                        " bytes, more than " + std::to_string(kMaxIdBytes)));
  return value;
}

ApiServer::ApiServer(const ServerConfig& config, Metrics* metrics)
    : config_(config), metrics_(metrics), http_(std::make_unique<httplib::Server>()) {
  const size_t threads = static_cast<size_t>(config_.http_threads);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http_->set_tcp_nodelay(true);
  // SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, which would let a second
  // server start on a port that is already serving instead of failing.
  http_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof yes);
  });
  http_->set_keep_alive_max_count(1000);
  http_->set_read_timeout(config_.read_timeout);
  http_->set_write_timeout(30);

  // A body announced larger than the limit is refused before the client sends it.
  http_->set_expect_100_continue_handler([this](const httplib::Request& req,
                                                httplib::Response& res) {
    bool streamed = req.path.size() > 7 && req.path.compare(req.path.size() - 7, 7, "/import") == 0;
    const uint64_t limit = static_cast<uint64_t>(config_.max_request_bytes);
    if (!streamed && req.has_header("Content-Length") &&
        req.get_header_value<uint64_t>("Content-Length") > limit) {
      // cpp-httplib 0.11 answers with res as it is: the status must be set here too.
      write_error(res, 413, "payload_too_large",
                  "request body of " + req.get_header_value("Content-Length") +
                      " bytes is over the limit of " + std::to_string(limit));
      metrics_->observe_request(req.method, kUnmatched, 413, 0);
      return 413;
    }
    return 100;
  });
  // Responses cpp-httplib produces itself (malformed requests, 413 before a handler, ...).
  http_->set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request& req,
             httplib::Response& res) -> httplib::Server::HandlerResponse {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string code = res.status == 413 ? "payload_too_large"
                       : res.status == 414 ? "uri_too_long"
                       : res.status == 404 ? "not_found"
                                           : "invalid_request";
    write_error(res, res.status, code,
                res.status == 413 ? "request body too large"
                                  : "HTTP error " + std::to_string(res.status));
    metrics_->observe_request(req.method.empty() ? "?" : req.method, kUnmatched, res.status, 0);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http_->set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        write_error(res, 500, "internal", "unexpected error");
      });
  http_->set_logger([](const httplib::Request& req, const httplib::Response& res) {
    spdlog::debug("{} {} -> {}", req.method, req.path, res.status);
  });
  register_routes();
}

ApiServer::~ApiServer() = default;

Status ApiServer::bind() {
  if (config_.port == 0) {
    port_ = http_->bind_to_any_port(config_.host);
    if (port_ <= 0) return unavailable("cannot listen on " + config_.host + " (any port)");
  } else {
    if (!http_->bind_to_port(config_.host, config_.port))
      return unavailable("cannot listen on " + config_.host + ":" +
                         std::to_string(config_.port) + " (address in use or not local?)");
    port_ = config_.port;
  }
  return Status::ok();
}

bool ApiServer::listen() { return http_->listen_after_bind(); }

void ApiServer::stop() { http_->stop(); }

std::vector<std::pair<std::string, std::string>> ApiServer::route_table() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : routes_)
    if (r->pattern != kUnmatched) out.emplace_back(r->method, r->pattern);
  return out;
}

void ApiServer::add(const Route& route_in) {
  auto route = std::make_shared<Route>(route_in);
  routes_.push_back(route);

  auto run = [this, route](const httplib::Request& req, httplib::Response& res,
                           const httplib::ContentReader* reader) {
    auto t0 = std::chrono::steady_clock::now();
    RequestContext ctx(req, res, config_, *metrics_);
    Service* service = service_.load();
    ctx.service = service;
    try {
      // Authentication.
      if (route->access != Access::kPublic && config_.auth_enabled()) {
        std::string auth = req.get_header_value("Authorization");
        std::string key;
        if (auth.size() > 7 && (auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0))
          key = auth.substr(7);
        bool admin = !key.empty() && key_in(key, config_.admin_keys);
        bool read = !key.empty() && key_in(key, config_.read_keys);
        if (!admin && !read) {
          res.set_header("WWW-Authenticate", "Bearer");
          write_error(res, 401, "unauthorized",
                      key.empty() ? "missing API key (Authorization: Bearer KEY)"
                                  : "invalid API key");
        } else if (route->access == Access::kAdmin && !admin) {
          write_error(res, 403, "forbidden", "this key is read-only; " + route->method + " " +
                                                 route->pattern + " needs the admin key");
        }
      }
      if (res.status < 400) {
        if (route->needs_service && !service)
          throw StatusException(unavailable("not ready: the model is loading"));
        if (route->body == Body::kBuffered && reader) {
          const uint64_t limit = static_cast<uint64_t>(config_.max_request_bytes);
          if (req.has_header("Content-Length") && req.get_header_value<uint64_t>("Content-Length") > limit)
            throw StatusException(payload_too_large(
                "request body of " + req.get_header_value("Content-Length") +
                " bytes is over the limit of " + std::to_string(limit)));
          bool too_big = false;
          ctx.body_read = true;
          if (has_body(req)) {
            bool ok = (*reader)([&](const char* data, size_t n) {
              if (ctx.body.size() + n > limit) {
                too_big = true;
                return false;
              }
              ctx.body.append(data, n);
              return true;
            });
            if (too_big)
              throw StatusException(payload_too_large("request body is over the limit of " +
                                                      std::to_string(limit) + " bytes"));
            if (!ok) throw StatusException(invalid_argument("could not read the request body"));
          }
        }
        if (route->body == Body::kStreamed) ctx.reader = reader;
        route->handler(ctx);
      }
    } catch (const StatusException& e) {
      HttpError he = http_error_for(e.status().code());
      write_error(res, he.status, he.code, e.status().message());
      if (he.status == 429) {
        int retry = service ? service->scheduler().retry_after_seconds() : 1;
        res.set_header("Retry-After", std::to_string(retry));
      }
      if (he.status >= 500 && he.status != 503)
        spdlog::error("{} {}: {}", req.method, req.path, e.status().to_string());
    } catch (const json::exception& e) {
      write_error(res, 400, "invalid_request", e.what());
    } catch (const std::bad_alloc&) {
      write_error(res, 503, "unavailable", "out of memory");
    } catch (const std::exception& e) {
      spdlog::error("{} {}: unexpected exception: {}", req.method, req.path, e.what());
      write_error(res, 500, "internal", e.what());
    } catch (...) {
      spdlog::error("{} {}: unexpected exception", req.method, req.path);
      write_error(res, 500, "internal", "unexpected error");
    }
    if (!ctx.body_read) drain_body(req, reader, static_cast<uint64_t>(config_.max_request_bytes));
    if (res.status < 0) res.status = 200;
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    metrics_->observe_request(req.method, route->pattern, res.status, seconds);
  };

  const std::string& m = route->method;
  if (m == "GET") {
    http_->Get(route->regex, [run](const httplib::Request& req, httplib::Response& res) {
      run(req, res, nullptr);
    });
    return;
  }
  auto with_reader = [run](const httplib::Request& req, httplib::Response& res,
                           const httplib::ContentReader& reader) { run(req, res, &reader); };
  if (m == "POST") http_->Post(route->regex, with_reader);
  else if (m == "PUT") http_->Put(route->regex, with_reader);
  else if (m == "DELETE") http_->Delete(route->regex, with_reader);
  else if (m == "PATCH") http_->Patch(route->regex, with_reader);
}

void ApiServer::register_routes() {
  add({"GET", "/health", "/health", Access::kPublic, Body::kNone, false,
       [](RequestContext& ctx) { ctx.reply(200, {{"status", "ok"}}); }});
  add({"GET", "/ready", "/ready", Access::kPublic, Body::kNone, false, [](RequestContext& ctx) {
         if (!ctx.service) throw StatusException(unavailable("not ready: the model is loading"));
         ctx.reply(200, {{"status", "ready"}});
       }});
  add({"GET", "/metrics", "/metrics", Access::kRead, Body::kNone, false,
       [](RequestContext& ctx) {
         std::string out = ctx.metrics.render();
         Metrics::render_process(&out);
         Metrics::render_header(&out, "qsearch_ready", "gauge",
                                "1 once the model is loaded and storage open.");
         Metrics::render_sample(&out, "qsearch_ready", "", ctx.service ? 1 : 0);
         if (Service* s = ctx.service) {
           Metrics::render_header(&out, "qsearch_queue_tokens", "gauge",
                                  "Tokens waiting for the engine.");
           Metrics::render_sample(&out, "qsearch_queue_tokens", "",
                                  static_cast<double>(s->scheduler().queued_tokens()));
           Metrics::render_header(&out, "qsearch_queue_sequences", "gauge",
                                  "Texts waiting for the engine.");
           Metrics::render_sample(&out, "qsearch_queue_sequences", "",
                                  static_cast<double>(s->scheduler().queued_sequences()));
           Metrics::render_header(&out, "qsearch_documents", "gauge",
                                  "Documents per collection.");
           for (const auto& [name, n] : s->store().document_counts())
             Metrics::render_sample(&out, "qsearch_documents",
                                    "collection=\"" + Metrics::label_value(name) + "\"",
                                    static_cast<double>(n));
           Metrics::render_header(&out, "qsearch_engine_memory_bytes", "gauge",
                                  "Engine memory by backend and kind (device_* on GPUs only).");
           for (size_t i = 0; i < s->embedder().num_backends(); ++i) {
             Backend& b = s->embedder().backend(i);
             EngineMemory mem = b.memory();
             std::string label = "backend=\"" + Metrics::label_value(b.name()) + "\",kind=\"";
             Metrics::render_sample(&out, "qsearch_engine_memory_bytes", label + "weights\"",
                                    static_cast<double>(mem.weights_bytes));
             Metrics::render_sample(&out, "qsearch_engine_memory_bytes", label + "workspace\"",
                                    static_cast<double>(mem.workspace_bytes));
             Metrics::render_sample(&out, "qsearch_engine_memory_bytes",
                                    label + "device_total\"",
                                    static_cast<double>(mem.device_total_bytes));
             Metrics::render_sample(&out, "qsearch_engine_memory_bytes", label + "device_free\"",
                                    static_cast<double>(mem.device_free_bytes));
           }
           if (Reranker* r = s->reranker()) {
             Metrics::render_header(&out, "qsearch_reranker_memory_bytes", "gauge",
                                    "Reranker engine memory by backend and kind.");
             for (size_t i = 0; i < r->num_backends(); ++i) {
               EngineMemory mem = r->backend(i).memory();
               std::string label =
                   "backend=\"" + Metrics::label_value(r->backend(i).name()) + "\",kind=\"";
               Metrics::render_sample(&out, "qsearch_reranker_memory_bytes", label + "weights\"",
                                      static_cast<double>(mem.weights_bytes));
               Metrics::render_sample(&out, "qsearch_reranker_memory_bytes",
                                      label + "workspace\"",
                                      static_cast<double>(mem.workspace_bytes));
             }
           }
         }
         ctx.res.status = 200;
         ctx.res.set_content(out, "text/plain; version=0.0.4; charset=utf-8");
       }});
  for (const auto& r : embedding_routes()) add(r);
  for (const auto& r : rerank_routes()) add(r);
  for (const auto& r : import_routes()) add(r);
  for (const auto& r : collection_routes()) add(r);
  for (const auto& r : duplicate_routes()) add(r);
  for (const auto& r : info_routes()) add(r);
  for (const auto& r : static_routes()) add(r);

  // Unknown paths: 404, or 405 where the path exists with other methods. Methods with a body
  // get catch-all routes that drain the body first (an unread body would be parsed as the next
  // request of the connection); the others are answered before routing. Overlong paths are
  // refused before any regex sees them.
  struct Matcher {
    std::string method;
    std::regex re;
  };
  auto matchers = std::make_shared<std::vector<Matcher>>();
  for (const auto& r : routes_) matchers->push_back({r->method, std::regex(r->regex)});
  // 405 when the path exists with another method, else 404.
  auto refuse = [matchers](const std::string& method, const std::string& path,
                           httplib::Response& res) {
    bool known = false;
    for (const auto& m : *matchers) known = known || std::regex_match(path, m.re);
    if (known)
      write_error(res, 405, "method_not_allowed", method + " is not allowed on " + path);
    else
      write_error(res, 404, "not_found", "no route for " + method + " " + path);
  };
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH"}) {
    add({method, kUnmatched, ".*", Access::kPublic, Body::kNone, false,
         [refuse](RequestContext& ctx) { refuse(ctx.req.method, ctx.req.path, ctx.res); }});
  }
  http_->set_pre_routing_handler([this, matchers, refuse](const httplib::Request& req,
                                                          httplib::Response& res) {
    if (req.path.size() > kMaxPathBytes) {
      write_error(res, 414, "uri_too_long",
                  "path longer than " + std::to_string(kMaxPathBytes) + " bytes");
      metrics_->observe_request(req.method, kUnmatched, 414, 0);
      return httplib::Server::HandlerResponse::Handled;
    }
    const std::string& m = req.method;
    if (m == "POST" || m == "PUT" || m == "DELETE" || m == "PATCH")
      return httplib::Server::HandlerResponse::Unhandled;  // the routes above, catch-alls last
    if (m == "GET" || m == "HEAD") {
      for (const auto& matcher : *matchers)
        if (matcher.method == "GET" && std::regex_match(req.path, matcher.re))
          return httplib::Server::HandlerResponse::Unhandled;
    }
    refuse(m, req.path, res);
    metrics_->observe_request(m, kUnmatched, res.status, 0);
    return httplib::Server::HandlerResponse::Handled;
  });
}

}  // namespace qsearch::api
