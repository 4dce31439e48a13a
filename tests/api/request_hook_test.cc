// The request hook of ApiServer (src/api/server.h): one RequestRecord per answered request,
// with the X-Request-Id echoed to the client. In process, without a model (the routes that
// need one answer 503, which is enough to see the records).
#include <gtest/gtest.h>

#include <mutex>
#include <thread>
#include <vector>

#include "api/server.h"
#include "server_util.h"

namespace qsearch::testing {
namespace {

TEST(RequestHook, ReportsEveryAnsweredRequest) {
  ServerConfig config;
  config.host = "127.0.0.1";
  config.port = 0;
  config.admin_keys = {"hook-admin"};
  Metrics metrics;
  api::ApiServer server(config, &metrics);
  std::mutex mu;
  std::vector<api::RequestRecord> records;
  server.set_request_hook([&](const api::RequestRecord& r) {
    std::lock_guard<std::mutex> lock(mu);
    records.push_back(r);
  });
  ASSERT_TRUE(server.bind().is_ok());
  std::thread listener([&] { server.listen(); });

  HttpResult health = http_request(server.port(), "GET", "/health", "", {"X-Request-Id: trace-1"});
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.header("X-Request-Id"), "trace-1");
  HttpResult denied = http_request(server.port(), "POST", "/collections/books/search", "{}");
  EXPECT_EQ(denied.status, 401);
  HttpResult loading = http_request(server.port(), "POST", "/collections/books/search", "{}",
                                    {"Authorization: Bearer hook-admin"});
  EXPECT_EQ(loading.status, 503);
  HttpResult odd = http_request(server.port(), "BREW", "/pot");
  EXPECT_EQ(odd.status, 501);

  server.stop();
  listener.join();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[0].request_id, "trace-1");
  EXPECT_EQ(records[0].client_address, "127.0.0.1");
  EXPECT_EQ(records[0].method, "GET");
  EXPECT_EQ(records[0].route, "/health");
  EXPECT_EQ(records[0].status, 200);
  EXPECT_EQ(records[0].bytes_out, health.body.size());
  EXPECT_EQ(records[0].key_role, "none");
  EXPECT_GT(records[0].latency_s, 0);
  EXPECT_EQ(records[1].status, 401);
  EXPECT_EQ(records[1].route, "/collections/{name}/search");
  EXPECT_EQ(records[1].collection, "books");
  EXPECT_EQ(records[1].key_role, "none");
  EXPECT_EQ(records[1].request_id, denied.header("X-Request-Id"));
  EXPECT_EQ(records[1].request_id.size(), 32u);
  EXPECT_EQ(records[2].status, 503);
  EXPECT_EQ(records[2].key_role, "admin");
  EXPECT_EQ(records[2].bytes_in, 2u);
  EXPECT_EQ(records[3].method, "OTHER");
  EXPECT_EQ(records[3].route, "(unmatched)");
  EXPECT_EQ(records[3].status, 501);
}

}  // namespace
}  // namespace qsearch::testing
