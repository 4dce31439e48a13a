// Route table of the HTTP API. Each route names its access level and how its body is read;
// handlers throw StatusException on failure and the wrapper in server.cc (the one place that
// catches) turns every error into {"error": {...}} with the status from http_error_for().
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "api/memory_budget.h"
#include "api/request.h"
#include "api/json_io.h"
#include "common/jobs.h"
#include "service/config.h"
#include "service/metrics.h"
#include "service/service.h"

namespace qsearch::api {

enum class Access {
  kPublic,  // no key needed (/health, /ready)
  kRead,    // read-only or admin key
  kAdmin,   // admin key
};

enum class Body {
  kNone,      // no body expected (one sent is ignored)
  kBuffered,  // read whole before the handler runs, at most max_request_bytes (413 above)
  kStreamed,  // the handler reads ctx.reader itself (NDJSON import); holds its worker while
              // the body arrives (min_body_rate bounds how long)
};

struct RequestContext {
  RequestContext(const HttpRequest& r, HttpResponse& s, const ServerConfig& c, Metrics& m)
      : req(r), res(s), config(c), metrics(m) {}

  const HttpRequest& req;
  HttpResponse& res;
  const ServerConfig& config;
  Metrics& metrics;
  Service* service = nullptr;              // set for routes that need the model
  const ContentReader* reader = nullptr;   // set for kStreamed routes
  std::string body;                        // kBuffered routes
  bool body_read = false;                  // set once the body was consumed
  Reservation memory;                      // what the route holds in max_inflight_bytes

  // Holds bytes more of the server's in-flight memory budget for this request, or throws
  // kUnavailable (503 + Retry-After) when the server is too busy. Call before building
  // something large.
  void reserve(int64_t bytes);
  // Throws kUnprocessable (422) when an answer of about `bytes` would exceed
  // max_response_bytes; hint says how to narrow or page.
  void check_response_size(int64_t bytes, const std::string& hint) const;

  // True once the client left: a reset, or for reads the end of its stream (HttpRequest).
  ClientGone client_gone() const {
    if (req.client_gone) return req.client_gone;
    return [] { return false; };
  }
  // Path parameter i (1-based regex group), URL-decoded.
  std::string param(size_t i) const { return i < req.matches.size() ? req.matches[i] : ""; }
  // The body parsed as a JSON object (400 otherwise).
  json json_body() const;
  void reply(int status, const json& j);
};

using RouteHandler = std::function<void(RequestContext&)>;

struct Route {
  std::string method;   // GET, POST, PUT, DELETE
  std::string pattern;  // for metrics and logs, e.g. "/collections/{name}"
  std::string regex;    // matched against the decoded path
  Access access;
  Body body;
  bool needs_service;   // 503 until the model is loaded and the store open
  RouteHandler handler;
};

std::vector<Route> embedding_routes();   // POST /v1/embeddings
std::vector<Route> rerank_routes();      // POST /v1/rerank
std::vector<Route> collection_routes();  // collections, documents, search (+ document_routes)
std::vector<Route> document_routes();    // count, scroll, bulk delete, PATCH (routes_documents.cc)
std::vector<Route> import_routes();      // POST /collections/{name}/import
std::vector<Route> duplicate_routes();   // POST /collections/{name}/duplicates
std::vector<Route> info_routes();        // GET /info, /v1/models, /jobs
std::vector<Route> static_routes();      // GET /openapi.json, /console (compiled-in files)

// A job (common/jobs.h) as GET /jobs shows it.
json job_json(const JobSnapshot& s);

// Validates a collection name or document id taken from a path (UTF-8, length); throws.
std::string checked_path_id(const std::string& value, const char* what);

// {"id", "text", "metadata"} -> DocumentInput (shared by the batch and import routes).
// Wrong types are kInvalidArgument; no exceptions.
Status parse_document(const json& j, DocumentInput* out);
// A stored document as GET /collections/{name}/documents/{id} and scroll show it.
json document_json(const Document& doc, bool with_text, bool with_metadata, bool with_embedding);
// {"id","tokens","truncated"} or {"id","error":{"code","message"}}.
json document_result_json(const DocumentResult& r);

}  // namespace qsearch::api
