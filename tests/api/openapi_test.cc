// docs/openapi.json: describes exactly the routes the server registers, is the document served
// at /openapi.json, passes a real OpenAPI 3.1 validator (@apidevtools/swagger-parser, from
// `make deps`), and the responses of a live server (successes and errors) match its schemas.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "api/server.h"
#include "server_util.h"

namespace qsearch::testing {
namespace {

namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json load_spec() {
  return json::parse(read_file(std::string(QSEARCH_SOURCE_DIR) + "/docs/openapi.json"));
}

const std::set<std::string> kMethods = {"get", "put", "post", "delete", "patch", "head", "options"};

TEST(OpenApi, DescribesEveryRegisteredRouteAndNothingElse) {
  json spec = load_spec();
  ASSERT_EQ(spec["openapi"].get<std::string>().substr(0, 4), "3.1.");
  std::set<std::string> described;
  for (const auto& [path, item] : spec["paths"].items())
    for (const auto& [method, op] : item.items())
      if (kMethods.count(method)) {
        std::string m = method;
        for (auto& c : m) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        described.insert(m + " " + path);
      }
  ServerConfig config;
  Metrics metrics;
  api::ApiServer server(config, &metrics);
  std::set<std::string> registered;
  for (const auto& [method, pattern] : server.route_table())
    registered.insert(method + " " + pattern);
  ASSERT_GT(registered.size(), 15u);
  std::string missing, extra;
  for (const auto& r : registered)
    if (!described.count(r)) missing += "\n  " + r;
  for (const auto& d : described)
    if (!registered.count(d)) extra += "\n  " + d;
  EXPECT_TRUE(missing.empty())
      << "routes the server registers that docs/openapi.json does not describe (add them under "
         "\"paths\", with their request body, responses and errors):"
      << missing;
  EXPECT_TRUE(extra.empty()) << "docs/openapi.json describes routes the server does not register:"
                             << extra;
  // Every operation names its responses, errors included, and has a unique operationId.
  std::set<std::string> ids;
  for (const auto& [path, item] : spec["paths"].items())
    for (const auto& [method, op] : item.items()) {
      if (!kMethods.count(method)) continue;
      EXPECT_TRUE(op.contains("operationId")) << method << " " << path;
      EXPECT_TRUE(ids.insert(op.value("operationId", "")).second) << method << " " << path;
      bool has_error = false;
      for (const auto& [status, r] : op["responses"].items()) has_error |= status[0] != '2';
      if (path != "/health" && path != "/openapi.json" && path != "/console")
        EXPECT_TRUE(has_error) << method << " " << path << " describes no error response";
    }
}

std::string find_node() {
  for (const char* dir : {"/usr/bin", "/usr/local/bin"}) {
    std::string p = std::string(dir) + "/node";
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// Records what a live server answers, for the schema check.
class Recorder {
 public:
  explicit Recorder(const ServerProcess& s) : s_(s) {}

  HttpResult call(const std::string& method, const std::string& route, const std::string& path,
                  const std::string& body, const std::string& key, int expected_status) {
    HttpResult r;
    if (method == "GET")
      r = s_.get(path, key);
    else if (method == "DELETE")
      r = s_.del(path, key);
    else if (method == "PUT")
      r = s_.put(path, json::parse(body), key);
    else if (method == "POST")
      r = s_.post(path, body, key);
    else
      r = s_.request(method, path, body, {"Authorization: Bearer " + key});
    EXPECT_EQ(r.status, expected_status) << method << " " << path << ": " << r.body;
    json sample = {{"method", method},
                   {"route", route},
                   {"status", r.status},
                   {"content_type", r.header("Content-Type")}};
    sample["body"] = r.header("Content-Type").find("json") != std::string::npos
                         ? r.json_body()
                         : json(r.body.substr(0, 100));
    lines_ += sample.dump() + "\n";
    ++count_;
    return r;
  }
  const std::string& lines() const { return lines_; }
  int count() const { return count_; }

 private:
  const ServerProcess& s_;
  std::string lines_;
  int count_ = 0;
};

TEST(OpenApi, ValidDescriptionServedAndLiveResponsesMatchIt) {
  const std::string node = find_node();
  ASSERT_FALSE(node.empty()) << "Node.js is required for this test (apt-get install nodejs)";
  const std::string node_dir = std::string(QSEARCH_DEPS_DIR) + "/node";
  ASSERT_TRUE(fs::exists(node_dir + "/node_modules/@apidevtools/swagger-parser/package.json"))
      << "@apidevtools/swagger-parser is missing: run `make deps`";

  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {},
                       {{"QSEARCH_API_KEY", "admin-k"}, {"QSEARCH_READ_KEY", "read-k"}});
  ASSERT_TRUE(server.start()) << server.start_error();
  const std::string A = "admin-k", R = "read-k";
  Recorder rec(server);

  // The served description is the file in the repository, byte for byte, without a key.
  HttpResult served = rec.call("GET", "/openapi.json", "/openapi.json", "", "", 200);
  EXPECT_EQ(served.body, read_file(std::string(QSEARCH_SOURCE_DIR) + "/docs/openapi.json"));

  rec.call("GET", "/console", "/console", "", "", 200);
  rec.call("GET", "/console/{file}", "/console/console.js", "", "", 200);
  rec.call("GET", "/console/{file}", "/console/console.css", "", "", 200);
  rec.call("GET", "/console/{file}", "/console/missing.js", "", "", 404);
  rec.call("GET", "/health", "/health", "", "", 200);
  rec.call("GET", "/ready", "/ready", "", "", 200);
  rec.call("GET", "/metrics", "/metrics", "", R, 200);
  rec.call("GET", "/info", "/info", "", R, 200);
  rec.call("GET", "/v1/models", "/v1/models", "", R, 200);
  rec.call("GET", "/v1/models/{model}", "/v1/models/test-model", "", R, 200);
  rec.call("GET", "/v1/models/{model}", "/v1/models/other", "", R, 404);
  rec.call("POST", "/v1/embeddings", "/v1/embeddings", R"({"input": ["a b", "c"]})", R, 200);
  rec.call("POST", "/v1/embeddings", "/v1/embeddings",
           R"({"input": "a", "encoding_format": "base64"})", R, 200);
  rec.call("POST", "/v1/embeddings", "/v1/embeddings", R"({"input": 5})", R, 400);
  rec.call("POST", "/v1/embeddings", "/v1/embeddings", R"({"input": "a", "dimensions": 100000})", R,
           422);
  rec.call("POST", "/v1/embeddings", "/v1/embeddings", R"({"input": "a"})", "", 401);
  rec.call("POST", "/v1/rerank", "/v1/rerank", R"({"query": "q", "documents": ["d"]})", R, 404);

  rec.call("POST", "/collections", "/collections", R"({"name": "c", "dimension": 32})", A, 201);
  rec.call("POST", "/collections", "/collections",
           R"({"name": "h", "dimension": 32, "index": {"type": "hnsw"},
               "chunking": {"max_tokens": 64, "overlap": 8}})",
           A, 201);
  rec.call("POST", "/collections", "/collections", R"({"name": "c", "dimension": 32})", A, 409);
  rec.call("POST", "/collections", "/collections", R"({"name": "x", "colour": 1})", A, 400);
  rec.call("POST", "/collections", "/collections", R"({"name": "x", "dimension": 1})", A, 422);
  rec.call("POST", "/collections", "/collections", R"({"name": "x"})", R, 403);
  rec.call("GET", "/collections", "/collections", "", R, 200);
  rec.call("GET", "/collections/{name}", "/collections/c", "", R, 200);
  rec.call("GET", "/collections/{name}", "/collections/nope", "", R, 404);

  rec.call("PUT", "/collections/{name}/documents/{id}", "/collections/c/documents/a%2Fb",
           R"({"text": "first document", "metadata": {"lang": "en"}})", A, 200);
  rec.call("PUT", "/collections/{name}/documents/{id}", "/collections/h/documents/long",
           R"({"text": "a chunked document with several sentences. It goes on. And on."})", A, 200);
  rec.call("POST", "/collections/{name}/documents", "/collections/c/documents",
           R"({"documents": [{"id": "b", "text": "second"}, {"id": "bad", "text": 3}]})", A, 200);
  rec.call("POST", "/collections/{name}/documents", "/collections/c/documents", R"({"docs": []})",
           A, 400);
  std::string ndjson;
  for (int i = 0; i < 20; ++i)
    ndjson +=
        json({{"id", "n" + std::to_string(i)}, {"text", "line " + std::to_string(i)}}).dump() +
        "\n";
  ndjson += "{oops}\n";
  rec.call("POST", "/collections/{name}/import", "/collections/c/import", ndjson, A, 200);
  rec.call("POST", "/collections/{name}/import", "/collections/nope/import", ndjson, A, 404);
  rec.call("GET", "/collections/{name}/documents/{id}", "/collections/c/documents/a%2Fb", "", R,
           200);
  rec.call("GET", "/collections/{name}/documents/{id}",
           "/collections/h/documents/long?include=embedding", "", R, 200);
  rec.call("GET", "/collections/{name}/documents/{id}", "/collections/c/documents/zzz", "", R, 404);
  rec.call("POST", "/collections/{name}/search", "/collections/c/search",
           R"({"query": "document", "k": 3, "filter": {"lang": "en"}})", R, 200);
  rec.call("POST", "/collections/{name}/search", "/collections/h/search",
           R"({"query": "sentences", "include": ["text"]})", R, 200);
  rec.call("POST", "/collections/{name}/search", "/collections/c/search",
           R"({"query": "x", "k": 0})", R, 422);
  rec.call("POST", "/collections/{name}/search", "/collections/c/search", R"({"q": "x"})", R, 400);
  rec.call("POST", "/collections/{name}/duplicates", "/collections/c/duplicates",
           R"({"threshold": 0.5})", R, 200);
  rec.call("POST", "/collections/{name}/duplicates", "/collections/c/duplicates",
           R"({"threshold": 2})", R, 422);
  rec.call("POST", "/collections/{name}/count", "/collections/c/count",
           R"({"filter": {"lang": "en"}})", R, 200);
  rec.call("POST", "/collections/{name}/count", "/collections/c/count",
           R"({"filter": {"lang": {"$what": 1}}})", R, 400);
  rec.call("POST", "/collections/{name}/documents/scroll", "/collections/c/documents/scroll",
           R"({"limit": 2, "include": ["metadata"]})", R, 200);
  rec.call("POST", "/collections/{name}/documents/scroll", "/collections/c/documents/scroll",
           R"({"limit": 0})", R, 422);
  rec.call("PATCH", "/collections/{name}/documents/{id}", "/collections/c/documents/n1",
           R"({"metadata": {"lang": "de"}})", A, 200);
  rec.call("PATCH", "/collections/{name}/documents/{id}", "/collections/c/documents/n1",
           R"({"text": "no"})", A, 400);
  rec.call("POST", "/collections/{name}/documents/delete", "/collections/c/documents/delete",
           R"({"filter": {"lang": "de"}})", A, 200);
  rec.call("POST", "/collections/{name}/documents/delete", "/collections/c/documents/delete",
           R"({"ids": ["n2"]})", R, 403);
  HttpResult jobs = rec.call("GET", "/jobs", "/jobs", "", R, 200);
  ASSERT_FALSE(jobs.json_body()["jobs"].empty()) << jobs.body;
  const std::string job_id = std::to_string(jobs.json_body()["jobs"][0]["id"].get<int>());
  rec.call("GET", "/jobs/{id}", "/jobs/" + job_id, "", R, 200);
  rec.call("GET", "/jobs/{id}", "/jobs/123456", "", R, 404);
  rec.call("DELETE", "/collections/{name}/documents/{id}", "/collections/c/documents/b", "", A,
           200);
  rec.call("DELETE", "/collections/{name}/documents/{id}", "/collections/c/documents/b", "", A,
           404);
  rec.call("DELETE", "/collections/{name}", "/collections/h", "", A, 200);
  rec.call("DELETE", "/collections/{name}", "/collections/h", "", A, 404);

  const std::string samples = dir.path() + "/samples.ndjson";
  std::ofstream(samples) << rec.lines();
  const std::string cmd = "QSEARCH_NODE_DIR='" + node_dir + "' '" + node + "' '" +
                          QSEARCH_SOURCE_DIR + "/tests/api/openapi_check.mjs' '" +
                          QSEARCH_SOURCE_DIR + "/docs/openapi.json' '" + samples + "' 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) output.append(buf, n);
  const int rc = pclose(pipe);
  EXPECT_EQ(rc, 0) << output;
  EXPECT_NE(output.find("valid: qsearch"), std::string::npos) << output;
  EXPECT_NE(output.find(std::to_string(rec.count()) + " recorded responses checked"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("all checks passed"), std::string::npos) << output;
}

}  // namespace
}  // namespace qsearch::testing
