// libFuzzer target: JSON request parsing of the HTTP API, two ways per input.
//
// 1. Directly, api::parse_json (depth limit, UTF-8 check, nlohmann underneath) against
//    nlohmann's own parser as a differential oracle: an accepted body is exactly what nlohmann
//    parses; a rejected one is malformed, invalid UTF-8 or nested deeper than kMaxJsonDepth.
//    parse_document() then runs on accepted objects (ids, text, metadata types).
// 2. End to end, in process: an ApiServer with a Service (tiny random-weight test model, CPU
//    engine, store in a scratch directory) on a loopback port; the first input byte picks the
//    route (embeddings, create collection, PUT/GET document, batch, search, NDJSON import, or
//    raw HTTP bytes), the rest is the body (for document routes: "id\nbody"). Oracle: every
//    request gets an answer (libFuzzer's -timeout catches hangs), never a 5xx, and every answer
//    is JSON, errors as {"error": {"code", "message"}}.
// Needs the real tokenizer.json (make deps): $QSEARCH_FUZZ_TOKENIZER or .deps/qwen3/.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <spdlog/spdlog.h>

#include "api/http.h"
#include "api/json_io.h"
#include "api/routes.h"
#include "api/server.h"
#include "embed/model/test_model.h"
#include "fuzz_util.h"
#include "service/config.h"
#include "service/metrics.h"
#include "service/service.h"

namespace {

using nlohmann::json;

struct Harness {
  qsearch::ServerConfig config;
  qsearch::Metrics metrics;
  std::unique_ptr<qsearch::api::ApiServer> server;
  std::unique_ptr<qsearch::Service> service;
  std::thread listener;
  std::unique_ptr<httplib::Client> client;
  int port = 0;
};
Harness* g = nullptr;

void die(const std::string& what) {
  std::fprintf(stderr, "json_request_fuzz: %s\n", what.c_str());
  std::exit(1);
}

// Nesting depth by a linear scan that skips strings (the oracle for the depth limit).
int max_depth(std::string_view s) {
  int depth = 0, best = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') best = std::max(best, ++depth);
    else if (c == ']' || c == '}') --depth;
  }
  return best;
}

void check_direct(std::string_view body) {
  auto parsed = qsearch::api::parse_json(body);
  json reference = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  const int depth = max_depth(body);
  if (parsed.is_ok()) {
    FUZZ_CHECK(!reference.is_discarded(), "parse_json accepted what nlohmann rejects");
    FUZZ_CHECK(*parsed == reference, "parse_json's value differs from nlohmann's");
    FUZZ_CHECK(depth <= qsearch::api::kMaxJsonDepth + 1, "accepted nesting depth %d", depth);
    if (parsed->is_object()) {
      qsearch::DocumentInput doc;
      qsearch::Status st = qsearch::api::parse_document(*parsed, &doc);
      if (st.is_ok()) {
        FUZZ_CHECK(doc.metadata.is_object(), "document metadata is not an object");
        FUZZ_CHECK(qsearch::fuzz::is_valid_utf8(doc.id) && qsearch::fuzz::is_valid_utf8(doc.text),
                   "document with invalid UTF-8 accepted");
      }
    }
  } else {
    FUZZ_CHECK(parsed.status().code() == qsearch::StatusCode::kInvalidArgument, "code %s",
               parsed.status().to_string().c_str());
    FUZZ_CHECK(reference.is_discarded() || depth > qsearch::api::kMaxJsonDepth - 1,
               "parse_json rejected valid JSON of depth %d: %s", depth,
               parsed.status().message().c_str());
  }
}

std::string url_encode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') out += static_cast<char>(c);
    else { out += '%'; out += hex[c >> 4]; out += hex[c & 15]; }
  }
  return out;
}

void check_answer(int status, const std::string& body, const std::string& what) {
  FUZZ_CHECK(status < 500, "%s answered %d: %s", what.c_str(), status, body.substr(0, 300).c_str());
  json j = json::parse(body, nullptr, false);
  FUZZ_CHECK(!j.is_discarded(), "%s answered %d with a body that is not JSON: %s", what.c_str(),
             status, body.substr(0, 200).c_str());
  if (status >= 400)
    FUZZ_CHECK(j.is_object() && j.contains("error") && j["error"].is_object() &&
                   j["error"].contains("code") && j["error"]["code"].is_string() &&
                   j["error"].contains("message") && j["error"]["message"].is_string(),
               "%s: error body %s", what.c_str(), body.substr(0, 200).c_str());
}

// Raw bytes to the server on a fresh socket; the answer (if any) must not be a 5xx.
void send_raw(std::string_view bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(g->port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect failed");
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);  // no more bytes: the server must not wait for a body forever
  char buf[16];
  ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  if (n >= 12 && std::memcmp(buf, "HTTP/1.", 7) == 0) {
    int status = std::atoi(buf + 9);
    // 501: an unknown method token or transfer coding (the front's documented answer); 503: a cap.
    FUZZ_CHECK(status < 500 || status == 501 || status == 503, "raw request answered %d", status);
  }
  ::close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);
  const char* env = std::getenv("QSEARCH_FUZZ_TOKENIZER");
  std::string tokenizer = env && *env ? env : std::string(QSEARCH_DEPS_DIR) + "/qwen3/tokenizer.json";
  const std::string base = qsearch::fuzz::scratch_dir();
  qsearch::TestModelOptions mo;
  mo.tokenizer_path = tokenizer;
  mo.out_dir = base + "/model";
  mo.layers = 1;
  auto model = qsearch::write_test_model(mo);
  if (!model.is_ok()) die("test model: " + model.status().to_string());

  g = new Harness();
  g->config.model = mo.out_dir;
  g->config.device = "cpu";
  g->config.data_dir = base + "/data";
  g->config.port = 0;
  g->config.threads = 1;
  g->config.http_threads = 4;
  g->config.max_request_bytes = 1 << 20;
  g->config.save_interval = 0;
  g->server = std::make_unique<qsearch::api::ApiServer>(g->config, &g->metrics);
  if (auto st = g->server->bind(); !st.is_ok()) die("bind: " + st.to_string());
  g->port = g->server->port();
  g->listener = std::thread([] { g->server->listen(); });
  auto service = qsearch::Service::open(g->config, &g->metrics);
  if (!service.is_ok()) die("service: " + service.status().to_string());
  g->service = std::move(service).value();
  g->server->set_service(g->service.get());
  g->client = std::make_unique<httplib::Client>("127.0.0.1", g->port);
  g->client->set_keep_alive(true);
  g->client->set_read_timeout(20, 0);
  auto r = g->client->Post("/collections", R"({"name": "fz", "index": {"type": "hnsw"}})", "application/json");
  if (!r || r->status != 201) die("cannot create the collection");
  g->client->Put("/collections/fz/documents/seed", R"({"text": "a seed document", "metadata": {"k": 1}})",
                 "application/json");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int route = data[0] % 8;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  check_direct(rest);

  std::string id, body(rest);
  if (route == 2 || route == 6) {  // "id\nbody"
    size_t nl = rest.find('\n');
    id = std::string(rest.substr(0, nl));
    body = nl == std::string_view::npos ? "" : std::string(rest.substr(nl + 1));
    if (id.empty()) id = "x";
  }
  if (route == 7) {
    send_raw(rest);
    return 0;
  }
  static const char* kWhat[] = {"POST /v1/embeddings", "POST /collections", "PUT document",
                                "POST documents", "POST search", "POST import", "GET document"};
  const std::string what = kWhat[route];
  httplib::Result r = [&]() {
    switch (route) {
      case 0: return g->client->Post("/v1/embeddings", body, "application/json");
      case 1: return g->client->Post("/collections", body, "application/json");
      case 2: return g->client->Put(("/collections/fz/documents/" + url_encode(id)).c_str(), body, "application/json");
      case 3: return g->client->Post("/collections/fz/documents", body, "application/json");
      case 4: return g->client->Post("/collections/fz/search", body, "application/json");
      case 5: return g->client->Post("/collections/fz/import", body, "application/x-ndjson");
      default: return g->client->Get(("/collections/fz/documents/" + url_encode(id) + "?include=embedding").c_str());
    }
  }();
  FUZZ_CHECK(static_cast<bool>(r), "%s: no answer (%s)", what.c_str(), httplib::to_string(r.error()).c_str());
  check_answer(r->status, r->body, what);
  if (route == 1 && r->status == 201) {  // keep the store small: drop what was created
    json j = json::parse(r->body, nullptr, false);
    if (j.is_object() && j.contains("name") && j["name"].is_string())
      g->client->Delete(("/collections/" + j["name"].get<std::string>()).c_str());
  }
  return 0;
}
