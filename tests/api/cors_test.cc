// The CORS policy (api/cors.h) on its own; the server's use of it is in server_cors_test.cc.
#include "api/cors.h"

#include <gtest/gtest.h>

#include <map>

#include "service/config.h"

namespace qsearch::api {
namespace {

std::map<std::string, std::string> as_map(const HeaderList& h) { return {h.begin(), h.end()}; }

TEST(CorsPolicy, OffByDefault) {
  CorsPolicy off;
  EXPECT_FALSE(off.enabled());
  EXPECT_EQ(off.allow_origin("https://app.example.com"), "");
  EXPECT_TRUE(off.response_headers("https://app.example.com").empty());
  EXPECT_TRUE(off.preflight_headers("https://app.example.com", {"GET"}).empty());
}

TEST(CorsPolicy, ListedOriginsOnly) {
  CorsPolicy p({"https://app.example.com", "http://localhost:3000"});
  EXPECT_EQ(p.allow_origin("https://app.example.com"), "https://app.example.com");
  EXPECT_EQ(p.allow_origin("HTTPS://APP.example.com"), "HTTPS://APP.example.com");
  EXPECT_EQ(p.allow_origin("http://localhost:3000"), "http://localhost:3000");
  for (const char* bad : {"https://evil.example.com", "http://app.example.com",
                          "https://app.example.com.evil.com", "null", "", "http://localhost:3001"})
    EXPECT_EQ(p.allow_origin(bad), "") << bad;
  auto h = as_map(p.response_headers("https://app.example.com"));
  EXPECT_EQ(h["Access-Control-Allow-Origin"], "https://app.example.com");
  EXPECT_EQ(h["Vary"], "Origin");
  EXPECT_NE(h["Access-Control-Expose-Headers"].find("X-Request-Id"), std::string::npos);
  auto pre = as_map(p.preflight_headers("https://app.example.com", {"GET", "DELETE", "GET"}));
  EXPECT_EQ(pre["Access-Control-Allow-Methods"], "GET, HEAD, DELETE");
  EXPECT_EQ(pre["Access-Control-Allow-Headers"], "Authorization, Content-Type, X-Request-Id");
  EXPECT_EQ(pre["Access-Control-Max-Age"], "600");
  EXPECT_TRUE(p.preflight_headers("https://evil.example.com", {"GET"}).empty());
}

TEST(CorsPolicy, AnyOrigin) {
  CorsPolicy p({"*"});
  auto h = as_map(p.response_headers("https://whatever.test"));
  EXPECT_EQ(h["Access-Control-Allow-Origin"], "*");
  EXPECT_EQ(h.count("Vary"), 0u);
  EXPECT_EQ(p.allow_origin(""), "");  // no Origin header: not a CORS request
}

TEST(CorsPolicy, OriginsOptionIsValidated) {
  auto ok =
      load_server_config({"--cors-origins", "https://a.example.com, http://localhost:8081"}, {});
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  EXPECT_EQ(ok->cors_origin_list,
            std::vector<std::string>({"https://a.example.com", "http://localhost:8081"}));
  EXPECT_TRUE(load_server_config({}, {})->cors_origin_list.empty());
  for (const char* bad : {"https://a.example.com/", "a.example.com", "ftp://a.example.com",
                          "https://a.example.com/path", "https://"}) {
    auto r = load_server_config({"--cors-origins", bad}, {});
    EXPECT_FALSE(r.is_ok()) << bad;
    if (!r.is_ok()) EXPECT_NE(r.status().message().find("cors_origins"), std::string::npos);
  }
  auto env = load_server_config({}, {{"QSEARCH_CORS_ORIGINS", "*"}});
  ASSERT_TRUE(env.is_ok());
  EXPECT_EQ(env->cors_origin_list, std::vector<std::string>({"*"}));
  auto fmt = load_server_config({"--log-format", "json"}, {});
  ASSERT_TRUE(fmt.is_ok());
  EXPECT_EQ(fmt->log_format, "json");
  EXPECT_FALSE(load_server_config({"--log-format", "xml"}, {}).is_ok());
}

}  // namespace
}  // namespace qsearch::api
