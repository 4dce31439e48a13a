// The search console (/console) in a real browser: headless Chromium from Debian, driven by
// playwright-core (tests/api/console_check.mjs), against a server that needs a key and is
// importing meanwhile. Skips visibly when chromium is not installed (`make deps` installs it).
// Screenshots go to build/test-output/console/ (beside the qsearch binary).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "server_util.h"

namespace qsearch::testing {
namespace {

namespace fs = std::filesystem;

std::string find_executable(const std::vector<std::string>& candidates) {
  for (const auto& c : candidates)
    if (access(c.c_str(), X_OK) == 0) return c;
  return "";
}

TEST(Console, ServedFromTheBinaryWithAStrictContentPolicy) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {}, {{"QSEARCH_API_KEY", "k"}});
  ASSERT_TRUE(server.start()) << server.start_error();
  // Public: the page asks for the key itself.
  for (const char* path : {"/console", "/console/", "/console?collection=x&q=y"}) {
    HttpResult page = server.get(path);
    ASSERT_EQ(page.status, 200) << path;
    EXPECT_EQ(page.header("Content-Type"), "text/html; charset=utf-8") << path;
    EXPECT_NE(page.body.find("<script src=\"/console/console.js\""), std::string::npos);
    EXPECT_NE(page.header("Content-Security-Policy").find("script-src 'self'"), std::string::npos);
  }
  HttpResult js = server.get("/console/console.js");
  ASSERT_EQ(js.status, 200);
  EXPECT_EQ(js.header("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(js.body, [] {
    std::ifstream in(std::string(QSEARCH_SOURCE_DIR) + "/src/api/console/console.js");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }());
  EXPECT_EQ(server.get("/console/console.css").header("Content-Type"), "text/css; charset=utf-8");
  // Nothing from elsewhere: no absolute URLs in the page, script or style sheet (the SVG
  // namespace is a name, not something fetched).
  for (const char* path : {"/console", "/console/console.js", "/console/console.css"}) {
    std::string body = server.get(path).body;
    const std::string svg_ns = "'http://www.w3.org/2000/svg'";
    for (size_t p; (p = body.find(svg_ns)) != std::string::npos;) body.erase(p, svg_ns.size());
    EXPECT_EQ(body.find("https://"), std::string::npos) << path;
    EXPECT_EQ(body.find("http://"), std::string::npos) << path;
  }
  HttpResult missing = server.get("/console/../../etc/passwd");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(server.get("/console/nope.js").json_body()["error"]["code"], "not_found");
}

TEST(Console, RendersResultsCollectionsAndProgressInChromium) {
  const std::string chromium =
      find_executable({"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"});
  if (chromium.empty())
    GTEST_SKIP() << "SKIPPED: no Chromium (apt-get install chromium, or `make deps`)";
  const std::string node = find_executable({"/usr/bin/node", "/usr/local/bin/node"});
  ASSERT_FALSE(node.empty()) << "Node.js is required for this test (apt-get install nodejs)";
  const std::string node_dir = std::string(QSEARCH_DEPS_DIR) + "/node";
  ASSERT_TRUE(fs::exists(node_dir + "/node_modules/playwright-core/package.json"))
      << "playwright-core is missing: run `make deps`";

  ScratchDir dir;
  const std::string key = "console-secret-key";
  // Small slow batches so that the import below is still running while the page looks.
  ServerProcess server(dir.path() + "/data",
                       {"--debug-batch-delay-ms", "40", "--max-batch-tokens", "256"},
                       {{"QSEARCH_API_KEY", key}});
  ASSERT_TRUE(server.start()) << server.start_error();
  ASSERT_EQ(server.post("/collections", json{{"name", "docs"}, {"dimension", 32}}, key).status,
            201);
  ASSERT_EQ(server.post("/collections", json{{"name", "small"}, {"dimension", 32}}, key).status,
            201);
  json docs = json::array();
  for (int i = 0; i < 30; ++i)
    docs.push_back({{"id", "doc-" + std::to_string(i)},
                    {"text", "The capital city of country " + std::to_string(i) +
                                 " has a river, a museum and " + std::to_string(i * 7) + " parks."},
                    {"metadata", {{"lang", i % 3 == 0 ? "de" : "en"}, {"n", i}}}});
  ASSERT_EQ(server.post("/collections/docs/documents", json{{"documents", docs}}, key).status, 200);
  json small = json::array();
  for (int i = 0; i < 3; ++i)
    small.push_back({{"id", "s" + std::to_string(i)}, {"text", "small " + std::to_string(i)}});
  ASSERT_EQ(server.post("/collections/small/documents", json{{"documents", small}}, key).status,
            200);

  std::string body;
  for (int i = 100; i < 6100; ++i)
    body += json({{"id", "doc-" + std::to_string(i)},
                  {"text", "Imported capital city record number " + std::to_string(i)},
                  {"metadata", {{"lang", "en"}}}})
                .dump() +
            "\n";
  std::thread importer([&] {
    server.request("POST", "/collections/docs/import", body, {"Authorization: Bearer " + key}, 300);
  });

  // Beside the binary (build/test-output/console), never in the source tree.
  const fs::path out =
      fs::absolute(fs::path(QSEARCH_BINARY).parent_path() / "test-output" / "console");
  fs::create_directories(out);
  const std::string cmd = "QSEARCH_NODE_DIR='" + node_dir +
                          "' QSEARCH_URL=http://127.0.0.1:" + std::to_string(server.port()) +
                          " QSEARCH_KEY='" + key + "' QSEARCH_CHROMIUM='" + chromium +
                          "' QSEARCH_OUT='" + out.string() + "' timeout 120 '" + node + "' '" +
                          QSEARCH_SOURCE_DIR + "/tests/api/console_check.mjs' 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  std::string output;
  if (pipe) {
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, pipe)) output.append(buf, n);
  }
  const int rc = pipe ? pclose(pipe) : -1;
  server.kill9();  // ends the import, which has served its purpose
  importer.join();
  std::cout << "console screenshots: " << out.string() << "/console.png, console-key.png\n";
  EXPECT_EQ(rc, 0) << output << "\nserver log:\n" << server.log_tail();
  EXPECT_NE(output.find("all checks passed"), std::string::npos) << output;
  EXPECT_TRUE(fs::exists(out / "console.png"));
}

}  // namespace
}  // namespace qsearch::testing
