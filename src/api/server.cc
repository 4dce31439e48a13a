#include "api/server.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <map>
#include <regex>

#include "api/errors.h"
#include "common/log.h"
#include "api/routes.h"
#include "service/service.h"

namespace qsearch::api {

struct RouteMatcher {
  Route route;
  std::regex re;
};

namespace {

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

void write_error(HttpResponse& res, int status, const std::string& code,
                 const std::string& message) {
  res.status = status;
  res.set_content(error_body(code, message), "application/json");
}

// nlohmann's messages start with "[json.exception.type_error.302] ": not for clients.
std::string without_exception_name(const std::string& what) {
  if (what.rfind("[json.exception.", 0) == 0) {
    auto pos = what.find("] ");
    if (pos != std::string::npos) return what.substr(pos + 2);
  }
  return what;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Content types a JSON route accepts: JSON itself, and the defaults of `curl -d`
// (application/x-www-form-urlencoded) and of fetch() with a string body (text/plain), whose
// bodies are parsed as JSON all the same. The import also takes NDJSON / JSON Lines.
bool acceptable_type(const std::string& content_type, bool ndjson) {
  std::string t = lower(content_type.substr(0, content_type.find(';')));
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.pop_back();
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.erase(0, 1);
  if (t.empty() || t == "application/json" || t == "application/x-www-form-urlencoded" ||
      t == "text/plain")
    return true;
  if (t.size() > 5 && t.compare(t.size() - 5, 5, "+json") == 0 && t.rfind("application/", 0) == 0)
    return true;
  if (ndjson)
    for (const char* x :
         {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonl",
          "application/jsonlines", "application/x-jsonlines", "text/x-ndjson"})
      if (t == x) return true;
  return false;
}

// How to get a smaller answer, by route.
const std::map<std::string, std::string>& response_hints() {
  static const std::map<std::string, std::string> hints = {
      {"/v1/embeddings",
       "send fewer inputs per request, use \"encoding_format\": \"base64\" or fewer "
       "\"dimensions\""},
      {"/v1/rerank", "send fewer documents or leave out \"return_documents\""},
      {"/collections/{name}/search",
       "lower \"k\", or leave the texts out with \"include\": [\"metadata\"] and fetch "
       "the documents you need by id"},
      {"/collections/{name}/duplicates",
       "lower \"limit\" and page with \"cursor\" (the response's \"next_cursor\")"},
      {"/collections/{name}/documents/{id}", "leave out ?include=embedding"},
  };
  return hints;
}

}  // namespace

json RequestContext::json_body() const {
  json j = value_or_throw(parse_json(body));
  require_object(j, "the request body");
  return j;
}

void RequestContext::reserve(int64_t bytes) {
  if (!memory.grow(bytes))
    throw StatusException(
        unavailable("server busy: this request needs " + std::to_string(bytes) +
                    " bytes more and in-flight requests hold the rest of max_inflight_bytes (" +
                    std::to_string(config.max_inflight_bytes) + "); retry later"));
}

// The message of a response over max_response_bytes.
static std::string too_large_message(int64_t bytes, int64_t limit, const std::string& hint) {
  return "the response would be about " + std::to_string(bytes) +
         " bytes, over max_response_bytes (" + std::to_string(limit) + "): " + hint;
}

void RequestContext::check_response_size(int64_t bytes, const std::string& hint) const {
  if (bytes > config.max_response_bytes)
    throw StatusException(unprocessable(too_large_message(bytes, config.max_response_bytes, hint)));
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
    : config_(config),
      metrics_(metrics),
      cors_(config.cors_origin_list),
      budget_(config.max_inflight_bytes),
      front_(std::make_unique<HttpFront>(config_, this, &budget_)) {
  register_routes();
}

ApiServer::~ApiServer() {
  // The front's threads call into this object: stop them first.
  front_->stop();
  front_.reset();
}

Status ApiServer::bind() { return front_->bind(); }

bool ApiServer::listen() { return front_->listen(); }

void ApiServer::stop() { front_->stop(); }

std::vector<std::pair<std::string, std::string>> ApiServer::route_table() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : routes_) out.emplace_back(r->route.method, r->route.pattern);
  return out;
}

void ApiServer::add(const Route& route) {
  routes_.push_back(std::make_shared<RouteMatcher>(RouteMatcher{route, std::regex(route.regex)}));
}

Admission ApiServer::admit(HttpRequest& req, HttpResponse& res) {
  log::RequestScope scope(req.request_id);
  const std::string origin = cors_.enabled() ? req.get_header_value("Origin") : std::string();
  if (!origin.empty() && req.method == "OPTIONS" &&
      req.has_header("Access-Control-Request-Method")) {
    // A CORS preflight: answered before authentication (browsers send no key on them), for
    // listed origins on routed paths only; anything else falls through to 405/404.
    std::vector<std::string> methods;
    std::string pattern;
    if (req.path.size() <= 4096)
      for (const auto& r : routes_)
        if (std::regex_match(req.path, r->re)) {
          methods.push_back(r->route.method);
          if (pattern.empty()) pattern = r->route.pattern;
        }
    HeaderList headers = methods.empty() ? HeaderList() : cors_.preflight_headers(origin, methods);
    if (!headers.empty()) {
      res.status = 204;
      for (const auto& [name, value] : headers) res.set_header(name, value);
      req.route = pattern;
      return Admission{};
    }
  }
  Admission a = admit_route(req, res);
  if (a.action == Admission::kRespond)
    for (const auto& [name, value] : cors_.response_headers(origin)) res.set_header(name, value);
  return a;
}

Admission ApiServer::admit_route(HttpRequest& req, HttpResponse& res) {
  Admission refuse;  // kRespond
  const std::string& m = req.method;
  const std::string& routed = m == "HEAD" ? std::string("GET") : m;
  std::smatch match;
  const RouteMatcher* found = nullptr;
  for (size_t i = 0; i < routes_.size() && !found; ++i) {
    if (routes_[i]->route.method == routed && std::regex_match(req.path, match, routes_[i]->re)) {
      found = routes_[i].get();
      req.route_index = static_cast<int>(i);
    }
  }
  if (!found) {
    // 405 (with Allow) when the path exists with other methods, else 404.
    std::string allow;
    for (const auto& r : routes_)
      if (std::regex_match(req.path, r->re) && allow.find(r->route.method) == std::string::npos)
        allow += (allow.empty() ? "" : ", ") + r->route.method +
                 (r->route.method == "GET" ? ", HEAD" : "");
    if (!allow.empty()) {
      res.set_header("Allow", allow);
      write_error(res, 405, "method_not_allowed",
                  (m.size() <= 32 ? m : m.substr(0, 32) + "...") + " is not allowed on this " +
                      "path (allowed: " + allow + ")");
    } else {
      write_error(res, 404, "not_found", "no route for this method and path");
    }
    return refuse;
  }
  const Route& route = found->route;
  req.route = route.pattern;
  req.writes = route.access == Access::kAdmin;
  for (size_t i = 0; i < match.size(); ++i) req.matches.push_back(match[i].str());
  if (route.pattern.rfind("/collections/{name}", 0) == 0 && req.matches.size() > 1 &&
      req.matches[1].size() <= kMaxIdBytes &&
      invalid_utf8_offset(req.matches[1]) == std::string::npos)
    req.collection = req.matches[1];

  // Authentication, before any body byte is read.
  if (!config_.auth_enabled()) {
    req.key_role = "open";
  } else {
    std::string auth = req.get_header_value("Authorization");
    std::string key;
    if (auth.size() > 7 &&
        (auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0))
      key = auth.substr(7);
    bool admin = !key.empty() && key_in(key, config_.admin_keys);
    bool read = !key.empty() && key_in(key, config_.read_keys);
    req.key_role = admin ? "admin" : read ? "read" : "none";
    if (route.access != Access::kPublic && !admin && !read) {
      res.set_header("WWW-Authenticate", "Bearer");
      write_error(res, 401, "unauthorized",
                  key.empty() ? "missing API key (Authorization: Bearer KEY)" : "invalid API key");
      return refuse;
    }
    if (route.access == Access::kAdmin && !admin) {
      write_error(
          res, 403, "forbidden",
          "this key is read-only; " + route.method + " " + route.pattern + " needs the admin key");
      return refuse;
    }
  }
  if (route.needs_service && !service_.load()) {
    write_error(res, 503, "unavailable", "not ready: the model is loading");
    return refuse;
  }

  const uint64_t limit = static_cast<uint64_t>(config_.max_request_bytes);
  if (route.body != Body::kNone && req.has_body &&
      !acceptable_type(req.get_header_value("Content-Type"), route.body == Body::kStreamed)) {
    std::string type = req.get_header_value("Content-Type");
    type = type.substr(0, std::min<size_t>(type.find(';'), 100));
    write_error(res, 415, "unsupported_media_type",
                "Content-Type " + type + " is not accepted: send the body as JSON (" +
                    (route.body == Body::kStreamed ? "Content-Type: application/x-ndjson, one "
                                                     "JSON document per line"
                                                   : "Content-Type: application/json") +
                    ")");
    return refuse;
  }
  if (route.body == Body::kStreamed) return {Admission::kStream, 0};
  if (route.body == Body::kBuffered && !req.chunked && req.content_length > limit) {
    write_error(res, 413, "payload_too_large",
                "request body of " + std::to_string(req.content_length) +
                    " bytes is over the limit of " + std::to_string(limit));
    return refuse;
  }
  // kNone: a body sent anyway is read (up to the limit) and ignored.
  return {Admission::kBuffer, limit};
}

void ApiServer::handle(HttpRequest& req, std::string& body, const ContentReader* reader,
                       HttpResponse& res) {
  // Every line this request causes on this thread carries its id (common/log.h).
  log::RequestScope scope(req.request_id);
  handle_route(req, body, reader, res);
  if (cors_.enabled())
    for (const auto& [name, value] : cors_.response_headers(req.get_header_value("Origin")))
      res.set_header(name, value);
}

void ApiServer::handle_route(HttpRequest& req, std::string& body, const ContentReader* reader,
                             HttpResponse& res) {
  const Route& route = routes_.at(static_cast<size_t>(req.route_index))->route;
  RequestContext ctx(req, res, config_, *metrics_);
  ctx.memory = Reservation(&budget_);
  Service* service = service_.load();
  ctx.service = service;
  try {
    if (route.needs_service && !service)
      throw StatusException(unavailable("not ready: the model is loading"));
    if (route.body == Body::kBuffered) {
      ctx.body = std::move(body);
      ctx.body_read = true;
      // The body itself is held by the front; its JSON tree takes about twice as much.
      ctx.reserve(2 * static_cast<int64_t>(ctx.body.size()));
    }
    if (route.body == Body::kStreamed) ctx.reader = reader;
    route.handler(ctx);
  } catch (const StatusException& e) {
    HttpError he = http_error_for(e.status().code());
    res.headers.clear();
    write_error(res, he.status, he.code, e.status().message());
    if (he.status == 429) {
      int retry = service ? service->scheduler().retry_after_seconds() : 1;
      res.set_header("Retry-After", std::to_string(retry));
    }
    if (he.status == 503) res.set_header("Retry-After", "1");
    if (he.status >= 500 && he.status != 503)
      spdlog::error("{} {}: {}", req.method, route.pattern, e.status().to_string());
  } catch (const json::exception& e) {
    write_error(res, 400, "invalid_request", without_exception_name(e.what()));
  } catch (const std::bad_alloc&) {
    write_error(res, 503, "unavailable", "out of memory");
    res.set_header("Retry-After", "1");
  } catch (const std::exception& e) {
    spdlog::error("{} {}: unexpected exception: {}", req.method, route.pattern, e.what());
    write_error(res, 500, "internal", "unexpected error");
  } catch (...) {
    spdlog::error("{} {}: unexpected exception", req.method, route.pattern);
    write_error(res, 500, "internal", "unexpected error");
  }
  if (res.status < 0) res.status = 200;
  // Routes check their large answers before building them; this catches the rest.
  const int64_t size = static_cast<int64_t>(res.body.size());
  if (size > config_.max_response_bytes && res.status < 300) {
    auto hint = response_hints().find(route.pattern);
    res.headers.clear();
    write_error(
        res, 422, "unprocessable",
        too_large_message(size, config_.max_response_bytes,
                          hint != response_hints().end() ? hint->second : "ask for less at once"));
  }
}

void ApiServer::finished(const RequestRecord& record) {
  metrics_->observe_request(record.method, record.route, record.status, record.latency_s);
  if (hook_) {
    try {
      hook_(record);
    } catch (...) {
    }
  }
}

std::string ApiServer::render_metrics(Service* service) const {
  std::string out = metrics_->render();
  Metrics::render_process(&out);
  Metrics::render_header(&out, "qsearch_ready", "gauge",
                         "1 once the model is loaded and storage open.");
  Metrics::render_sample(&out, "qsearch_ready", "", service ? 1 : 0);
  if (Service* s = service) {
    Metrics::render_header(&out, "qsearch_queue_tokens", "gauge", "Tokens waiting for the engine.");
    Metrics::render_sample(&out, "qsearch_queue_tokens", "",
                           static_cast<double>(s->scheduler().queued_tokens()));
    Metrics::render_header(&out, "qsearch_queue_sequences", "gauge",
                           "Texts waiting for the engine.");
    Metrics::render_sample(&out, "qsearch_queue_sequences", "",
                           static_cast<double>(s->scheduler().queued_sequences()));
    Metrics::render_header(&out, "qsearch_documents", "gauge", "Documents per collection.");
    for (const auto& [name, n] : s->store().document_counts())
      Metrics::render_sample(&out, "qsearch_documents",
                             "collection=\"" + Metrics::label_value(name) + "\"",
                             static_cast<double>(n));
    Metrics::render_header(&out, "qsearch_index_pending_vectors", "gauge",
                           "Vectors written but not yet in the HNSW graph (searched exactly).");
    for (const CollectionInfo& info : s->store().list_collections())
      Metrics::render_sample(&out, "qsearch_index_pending_vectors",
                             "collection=\"" + Metrics::label_value(info.spec.name) + "\"",
                             static_cast<double>(info.index_pending));
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
      Metrics::render_sample(&out, "qsearch_engine_memory_bytes", label + "device_total\"",
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
        Metrics::render_sample(&out, "qsearch_reranker_memory_bytes", label + "workspace\"",
                               static_cast<double>(mem.workspace_bytes));
      }
    }
  }
  Metrics::render_header(&out, "qsearch_http_connections", "gauge", "Open HTTP connections.");
  Metrics::render_sample(&out, "qsearch_http_connections", "",
                         static_cast<double>(front_->open_connections()));
  Metrics::render_header(&out, "qsearch_http_requests_in_flight", "gauge",
                         "Requests received and not yet answered (on a worker or queued for one).");
  Metrics::render_sample(&out, "qsearch_http_requests_in_flight", "",
                         static_cast<double>(front_->requests_in_flight()));
  Metrics::render_header(&out, "qsearch_http_connections_refused_total", "counter",
                         "Connections refused at max_connections or max_connections_per_client.");
  Metrics::render_sample(&out, "qsearch_http_connections_refused_total", "",
                         static_cast<double>(front_->connections_refused()));
  return out;
}

void ApiServer::register_routes() {
  add({"GET", "/health", "/health", Access::kPublic, Body::kNone, false, [](RequestContext& ctx) {
         ctx.reply(200, {{"status", "ok"}});
       }});
  add({"GET", "/ready", "/ready", Access::kPublic, Body::kNone, false, [](RequestContext& ctx) {
         if (!ctx.service) throw StatusException(unavailable("not ready: the model is loading"));
         ctx.reply(200, {{"status", "ready"}});
       }});
  add({"GET", "/metrics", "/metrics", Access::kRead, Body::kNone, false,
       [this](RequestContext& ctx) {
         ctx.res.status = 200;
         ctx.res.set_content(render_metrics(ctx.service),
                             "text/plain; version=0.0.4; charset=utf-8");
       }});
  for (const auto& r : embedding_routes()) add(r);
  for (const auto& r : rerank_routes()) add(r);
  for (const auto& r : import_routes()) add(r);
  for (const auto& r : collection_routes()) add(r);
  for (const auto& r : duplicate_routes()) add(r);
  for (const auto& r : info_routes()) add(r);
  for (const auto& r : static_routes()) add(r);
}

}  // namespace qsearch::api
