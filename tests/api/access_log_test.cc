// The access log, request ids in log lines, --log-format json and CORS, end to end.
#include <gtest/gtest.h>

#include <sstream>

#include "server_util.h"

namespace qsearch::testing {
namespace {

std::vector<std::string> lines_with(const std::string& log, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(log);
  for (std::string l; std::getline(in, l);)
    if (l.find(needle) != std::string::npos) out.push_back(l);
  return out;
}

TEST(AccessLog, OneLinePerRequestWithRequestIdAndNoKey) {
  ScratchDir dir;
  const std::string admin = "admin-key-never-logged", reader = "read-key-never-logged";
  ServerProcess server(dir.path() + "/data", {},
                       {{"QSEARCH_API_KEY", admin}, {"QSEARCH_READ_KEY", reader}});
  ASSERT_TRUE(server.start()) << server.start_error();
  HttpResult created =
      server.request("POST", "/collections", R"({"name": "logs", "dimension": 32})",
                     {"Authorization: Bearer " + admin, "X-Request-Id: create-1"});
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(created.header("X-Request-Id"), "create-1");
  HttpResult missing = server.request("GET", "/collections/nope/documents/a%2Fsecret-id", "",
                                      {"Authorization: Bearer " + reader, "X-Request-Id: get-2"});
  EXPECT_EQ(missing.status, 404);
  HttpResult unauth = server.request("GET", "/collections", "", {"X-Request-Id: anon-3"});
  EXPECT_EQ(unauth.status, 401);
  HttpResult generated = server.request("GET", "/health");
  const std::string gen_id = generated.header("X-Request-Id");
  EXPECT_EQ(gen_id.size(), 32u) << gen_id;
  std::string ndjson;
  for (int i = 0; i < 5; ++i)
    ndjson +=
        "{\"id\": \"d" + std::to_string(i) + "\", \"text\": \"doc " + std::to_string(i) + "\"}\n";
  HttpResult imported = server.request("POST", "/collections/logs/import", ndjson,
                                       {"Authorization: Bearer " + admin, "X-Request-Id: import-4",
                                        "Content-Type: application/x-ndjson"});
  ASSERT_EQ(imported.status, 200) << imported.body;

  // The hook runs once the response is handed to the socket: give the last line a moment.
  std::string log;
  for (int i = 0; i < 100; ++i) {
    log = server.log();
    if (log.find("request_id=\"import-4\"") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto one = [&](const std::string& id) {
    auto l = lines_with(log, " access request_id=\"" + id + "\"");
    EXPECT_EQ(l.size(), 1u) << id << "\n" << log;
    return l.empty() ? std::string() : l[0];
  };
  std::string c = one("create-1");
  for (const char* f :
       {" info access ", "client=\"127.0.0.1\"", "method=\"POST\"", "route=\"/collections\"",
        "status=201", "key_role=\"admin\"", "latency_ms=", "collection=null"})
    EXPECT_NE(c.find(f), std::string::npos) << f << " in " << c;
  EXPECT_NE(c.find("bytes_in=" +
                   std::to_string(std::string(R"({"name": "logs", "dimension": 32})").size())),
            std::string::npos)
      << c;
  std::string g = one("get-2");
  for (const char* f : {"method=\"GET\"", "route=\"/collections/{name}/documents/{id}\"",
                        "status=404", "key_role=\"read\"", "collection=\"nope\""})
    EXPECT_NE(g.find(f), std::string::npos) << f << " in " << g;
  EXPECT_EQ(g.find("secret-id"), std::string::npos) << "the raw path is not logged: " << g;
  std::string a = one("anon-3");
  EXPECT_NE(a.find("status=401"), std::string::npos) << a;
  EXPECT_NE(a.find("key_role=\"none\""), std::string::npos) << a;
  EXPECT_NE(one(gen_id).find("route=\"/health\""), std::string::npos);
  std::string i = one("import-4");
  EXPECT_NE(i.find("bytes_in=" + std::to_string(ndjson.size())), std::string::npos) << i;
  EXPECT_NE(i.find("collection=\"logs\""), std::string::npos) << i;
  // Lines the request caused on its thread carry its id.
  EXPECT_EQ(lines_with(log, "[req create-1] store: created collection 'logs'").size(), 1u) << log;
  EXPECT_EQ(lines_with(log, "[req import-4] import into 'logs'").size(), 2u) << log;  // start, end
  // Keys never appear.
  EXPECT_EQ(log.find(admin), std::string::npos);
  EXPECT_EQ(log.find(reader), std::string::npos);
}

TEST(AccessLog, JsonLines) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {"--log-format", "json"});
  ASSERT_TRUE(server.start()) << server.start_error();
  ASSERT_EQ(server
                .request("POST", "/collections", R"({"name": "j", "dimension": 32})",
                         {"X-Request-Id: json-1"})
                .status,
            201);
  std::string log;
  for (int i = 0; i < 100; ++i) {
    log = server.log();
    if (log.find("\"request_id\":\"json-1\",\"client\"") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  int objects = 0, access = 0, caused = 0;
  std::istringstream in(log);
  for (std::string l; std::getline(in, l);) {
    if (l.empty() || l[0] != '{') continue;  // not spdlog's (none expected, but not ours to judge)
    json j = json::parse(l, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << l;
    ++objects;
    EXPECT_TRUE(j["time"].is_string() && j["level"].is_string() && j["msg"].is_string()) << l;
    if (j["msg"] == "access" && j["request_id"] == "json-1") {
      ++access;
      EXPECT_EQ(j["method"], "POST");
      EXPECT_EQ(j["route"], "/collections");
      EXPECT_EQ(j["status"], 201);
      EXPECT_TRUE(j["latency_ms"].is_number());
      EXPECT_EQ(j["key_role"], "open");
      EXPECT_TRUE(j["collection"].is_null());
    }
    if (j.value("request_id", "") == "json-1" &&
        j["msg"].get<std::string>().find("created collection") != std::string::npos)
      ++caused;
  }
  EXPECT_GT(objects, 3);
  EXPECT_EQ(access, 1) << log;
  EXPECT_EQ(caused, 1) << log;
  EXPECT_EQ(lines_with(log, "listening on").size(), 1u);
}

TEST(Cors, OffByDefault) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data");
  ASSERT_TRUE(server.start()) << server.start_error();
  HttpResult pre =
      server.request("OPTIONS", "/collections", "",
                     {"Origin: https://app.example.com", "Access-Control-Request-Method: POST"});
  EXPECT_EQ(pre.status, 405);
  EXPECT_EQ(pre.header("Access-Control-Allow-Origin"), "");
  HttpResult get = server.request("GET", "/health", "", {"Origin: https://app.example.com"});
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.header("Access-Control-Allow-Origin"), "");
}

TEST(Cors, ListedOriginsGetPreflightsAndHeaders) {
  ScratchDir dir;
  const std::string app = "https://app.example.com";
  ServerProcess server(dir.path() + "/data", {"--cors-origins", app + ",http://localhost:3000"},
                       {{"QSEARCH_API_KEY", "k"}});
  ASSERT_TRUE(server.start()) << server.start_error();
  // A preflight from a listed origin: 204 before authentication (no key on preflights).
  HttpResult pre = server.request("OPTIONS", "/collections/docs/search", "",
                                  {"Origin: " + app, "Access-Control-Request-Method: POST",
                                   "Access-Control-Request-Headers: authorization, content-type"});
  EXPECT_EQ(pre.status, 204) << pre.raw;
  EXPECT_EQ(pre.header("Access-Control-Allow-Origin"), app);
  EXPECT_EQ(pre.header("Access-Control-Allow-Methods"), "POST");
  EXPECT_NE(pre.header("Access-Control-Allow-Headers").find("Authorization"), std::string::npos);
  EXPECT_EQ(pre.header("Access-Control-Max-Age"), "600");
  EXPECT_EQ(pre.header("Vary"), "Origin");
  HttpResult multi = server.request("OPTIONS", "/collections/docs/documents/x", "",
                                    {"Origin: " + app, "Access-Control-Request-Method: PUT"});
  EXPECT_EQ(multi.status, 204);
  for (const char* m : {"GET", "PUT", "PATCH", "DELETE"})
    EXPECT_NE(multi.header("Access-Control-Allow-Methods").find(m), std::string::npos) << m;
  // Other origins: no CORS headers, the preflight is not answered as one.
  HttpResult evil =
      server.request("OPTIONS", "/collections/docs/search", "",
                     {"Origin: https://evil.example.com", "Access-Control-Request-Method: POST"});
  EXPECT_NE(evil.status, 204);
  EXPECT_EQ(evil.header("Access-Control-Allow-Origin"), "");
  // A preflight for a path that is not routed: 404, no CORS headers.
  HttpResult nowhere = server.request("OPTIONS", "/nowhere", "",
                                      {"Origin: " + app, "Access-Control-Request-Method: GET"});
  EXPECT_EQ(nowhere.status, 404);
  // Actual requests from the listed origin carry the headers, errors included (so the page can
  // read the error), and expose X-Request-Id.
  HttpResult ok =
      server.request("GET", "/collections", "", {"Origin: " + app, "Authorization: Bearer k"});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.header("Access-Control-Allow-Origin"), app);
  EXPECT_NE(ok.header("Access-Control-Expose-Headers").find("X-Request-Id"), std::string::npos);
  HttpResult denied = server.request("GET", "/collections", "", {"Origin: http://localhost:3000"});
  EXPECT_EQ(denied.status, 401);
  EXPECT_EQ(denied.header("Access-Control-Allow-Origin"), "http://localhost:3000");
  HttpResult bad =
      server.request("POST", "/collections", "{", {"Origin: " + app, "Authorization: Bearer k"});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.header("Access-Control-Allow-Origin"), app);
  HttpResult other = server.request(
      "GET", "/collections", "", {"Origin: https://evil.example.com", "Authorization: Bearer k"});
  EXPECT_EQ(other.status, 200);  // CORS is the browser's check; the server just says nothing
  EXPECT_EQ(other.header("Access-Control-Allow-Origin"), "");
}

}  // namespace
}  // namespace qsearch::testing
