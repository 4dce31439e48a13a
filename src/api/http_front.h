// The HTTP/1.1 transport of `qsearch serve`, on Boost.Beast/Asio (docs/server.md).
//
// Model: a few I/O threads (http_io_threads) run every connection asynchronously: accepting,
// reading and parsing the request head and a buffered body (Beast's parser; nothing here
// parses HTTP by hand), writing responses, timing clients out. A request is handed to the
// bounded worker pool (http_threads) only once it is fully received (or, for streamed routes,
// once its head is accepted), in arrival order, so idle keep-alive connections and slow
// senders hold no worker. A connection has at most one request in flight; pipelined requests
// are answered in order.
//
// Limits enforced here (ServerConfig, every one a flag/env/config key):
//   head_timeout: the request head must arrive within this many seconds of its first byte;
//   keep_alive_timeout: an idle connection is closed after this many seconds;
//   read_timeout + min_body_rate: a body gets read_timeout seconds of grace, then must keep
//     arriving at min_body_rate bytes/s on average (and no read may stall read_timeout s);
//   max_header_bytes / max_header_count: 431;
//   exactly one Content-Length (digits only), no Content-Length with Transfer-Encoding,
//     Transfer-Encoding only "chunked", no control characters in header values: 400 / 501;
//   methods: those the API routes (GET HEAD POST PUT DELETE PATCH) pass; other standard
//     methods reach the app (404/405), unknown tokens get 501; metrics see "OTHER" for both;
//   max_connections / max_connections_per_client: 503 + Retry-After at accept;
//   max_inflight_bytes (MemoryBudget): request and response bodies; 503 + Retry-After.
// The app (server.cc) routes, authenticates and checks sizes and types in admit(), before
// any body byte is read.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "api/memory_budget.h"
#include "api/request.h"
#include "common/status.h"
#include "service/config.h"

namespace qsearch::api {

// One finished request, as reported to the request hook (server.h).
struct RequestRecord {
  std::string request_id;      // X-Request-Id as echoed to the client
  std::string client_address;  // peer IP address (no port)
  std::string method;          // GET HEAD POST PUT DELETE PATCH OPTIONS, else "OTHER"
  std::string route;           // route pattern ("/collections/{name}/search"), "(unmatched)"
  int status = 0;              // HTTP status sent (0: none could be sent)
  uint64_t bytes_in = 0;       // request body bytes read
  uint64_t bytes_out = 0;      // response body bytes
  double latency_s = 0;        // first byte of the request to the response handed to the socket
  std::string key_role;        // "admin", "read", "none" (missing or wrong key), "open" (no auth)
  std::string collection;      // the collection named in the path, else empty
};

// What the app decides once a request head is in.
struct Admission {
  enum Action {
    kRespond,  // res is the answer; the body (if any) is not read
    kBuffer,   // read the whole body (at most max_body bytes, else 413), then handle()
    kStream,   // handle() at once; the handler reads the body through a ContentReader
  };
  Action action = kRespond;
  uint64_t max_body = 0;  // kBuffer
};

class HttpApp {
 public:
  virtual ~HttpApp() = default;
  // I/O thread, after the head was parsed and checked: route, authenticate, check sizes and
  // types. Must not block. req.route/key_role/collection are filled here for the record.
  virtual Admission admit(HttpRequest& req, HttpResponse& res) = 0;
  // Worker thread: runs the route. body holds the buffered body (kBuffer); reader is set for
  // kStream. Must fill res (an exception here is a bug: answered 500 without details).
  virtual void handle(HttpRequest& req, std::string& body, const ContentReader* reader,
                      HttpResponse& res) = 0;
  // Every request the front answered (also its own errors: 400, 408, 431, 501, 503), once the
  // response is complete and about to be written. Any thread; must be cheap and not throw.
  virtual void finished(const RequestRecord& record) = 0;
};

class HttpFront {
 public:
  // budget: max_inflight_bytes; request bodies are held in it while read and handled, and
  // response bodies until written (503 + Retry-After when it is full).
  HttpFront(const ServerConfig& config, HttpApp* app, MemoryBudget* budget);
  ~HttpFront();

  // Binds host:port (port 0: any free port, see port()).
  Status bind();
  int port() const;
  // Serves until stop(); returns once in-flight requests are answered. False if the listener
  // failed.
  bool listen();
  // Any thread, any number of times, also before listen(): stops accepting, closes idle
  // connections, lets running requests finish.
  void stop();

  // Gauges for /metrics.
  int64_t open_connections() const;
  int64_t requests_in_flight() const;
  int64_t connections_refused() const;

  struct Impl;  // http_front.cc

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace qsearch::api
