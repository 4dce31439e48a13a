// `qsearch serve`'s HTTP server: the routes of routes.h on cpp-httplib, with authentication
// (Authorization: Bearer, admin and read-only keys), metrics per route and status, body-size
// limits, and the single wrapper that turns exceptions and Status values into responses.
//
// Lifecycle: bind(), then listen() on one thread (blocks); /health answers at once, /ready and
// the model routes answer 503 until set_service(). stop() (from any thread, e.g. a signal
// handler thread) makes listen() return; then the Service can be shut down.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "service/config.h"
#include "service/metrics.h"

namespace httplib {
class Server;
}

namespace qsearch {
class Service;
}

namespace qsearch::api {

struct Route;

class ApiServer {
 public:
  ApiServer(const ServerConfig& config, Metrics* metrics);
  ~ApiServer();

  // Binds host:port (port 0: any free port, see port()).
  Status bind();
  int port() const { return port_; }
  // Serves until stop(). Returns false if the listener failed.
  bool listen();
  void stop();

  // Makes the model routes available (/ready turns 200). null: back to not ready.
  void set_service(Service* service) { service_.store(service); }

  // The registered routes as (method, path template), catch-alls left out; the OpenAPI test
  // checks that docs/openapi.json describes exactly these.
  std::vector<std::pair<std::string, std::string>> route_table() const;

 private:
  void register_routes();
  void add(const Route& route);

  ServerConfig config_;
  Metrics* metrics_;
  std::unique_ptr<httplib::Server> http_;
  std::vector<std::shared_ptr<Route>> routes_;
  std::atomic<Service*> service_{nullptr};
  int port_ = 0;
};

}  // namespace qsearch::api
