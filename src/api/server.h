// `qsearch serve`'s HTTP server: the routes of routes.h behind the event-driven front of
// http_front.h (Boost.Beast; the model and every limit are in docs/server.md), with
// authentication (Authorization: Bearer, admin and read-only keys, checked before any body
// byte is read), metrics per route and status, body-size and content-type checks, and the
// single wrapper that turns exceptions and Status values into responses.
//
// Lifecycle: bind(), then listen() on one thread (blocks); /health answers at once, /ready and
// the model routes answer 503 until set_service(). stop() (from any thread, e.g. a signal
// handler thread) makes listen() return once running requests are answered; then the Service
// can be shut down.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "api/cors.h"
#include "api/http_front.h"
#include "api/memory_budget.h"
#include "common/status.h"
#include "service/config.h"
#include "service/metrics.h"

namespace qsearch {
class Service;
}

namespace qsearch::api {

struct Route;
struct RouteMatcher;

// The request hook: called once per request the server answers (also its own refusals: 400,
// 401, 404, 408, 413, 415, 431, 501, ...), when the response is complete and handed to the
// socket, with the fields of RequestRecord (http_front.h): request id (the X-Request-Id the
// client sent when it is 1-128 characters of [A-Za-z0-9._:-], else a generated 32-hex-digit
// id; echoed in the response either way), client address, method (GET HEAD POST PUT DELETE
// PATCH OPTIONS or "OTHER"), route template, status, bytes in/out, latency, key role and collection.
// It runs on an I/O or worker thread, possibly on several at once: it must be thread-safe,
// fast and must not throw. Connections refused at the connection caps are not requests (they
// are counted in qsearch_http_connections_refused_total).
using RequestHook = std::function<void(const RequestRecord&)>;

class ApiServer : public HttpApp {
 public:
  ApiServer(const ServerConfig& config, Metrics* metrics);
  ~ApiServer() override;

  // Binds host:port (port 0: any free port, see port()).
  Status bind();
  int port() const { return front_->port(); }
  // Serves until stop(). Returns false if the listener failed.
  bool listen();
  void stop();

  // Makes the model routes available (/ready turns 200). null: back to not ready.
  void set_service(Service* service) { service_.store(service); }
  // Installs the request hook (before listen(); replaces any earlier one).
  void set_request_hook(RequestHook hook) { hook_ = std::move(hook); }

  // HttpApp (called by the front).
  // admit(): CORS preflights, then admit_route(); handle(): the request id of log lines, then
  // handle_route(); both add the CORS headers of an allowed Origin to the answer.
  Admission admit(HttpRequest& req, HttpResponse& res) override;
  void handle(HttpRequest& req, std::string& body, const ContentReader* reader,
              HttpResponse& res) override;
  void finished(const RequestRecord& record) override;

  // The registered routes as (method, path template), catch-alls left out; the OpenAPI test
  // checks that docs/openapi.json describes exactly these.
  std::vector<std::pair<std::string, std::string>> route_table() const;

 private:
  Admission admit_route(HttpRequest& req, HttpResponse& res);
  void handle_route(HttpRequest& req, std::string& body, const ContentReader* reader,
                    HttpResponse& res);
  void register_routes();
  void add(const Route& route);
  std::string render_metrics(Service* service) const;

  ServerConfig config_;
  Metrics* metrics_;
  std::vector<std::shared_ptr<RouteMatcher>> routes_;
  std::atomic<Service*> service_{nullptr};
  RequestHook hook_;
  CorsPolicy cors_;  // --cors-origins (off when empty)
  MemoryBudget budget_;  // max_inflight_bytes (before front_, which uses it)
  std::unique_ptr<HttpFront> front_;
};

}  // namespace qsearch::api
