// Log formats (common/log.h): text and JSON lines, the request id of the writing thread, fields
// of structured lines, invalid UTF-8.
#include "common/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace qsearch::log {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = spdlog::default_logger();
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
  }
  void TearDown() override { spdlog::set_default_logger(saved_); }
  std::vector<std::string> lines() {
    std::vector<std::string> v;
    std::istringstream in(out_.str());
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
  }
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> saved_;
};

TEST_F(LogTest, TextCarriesTheRequestIdOfTheThread) {
  ASSERT_TRUE(configure("text", "info").is_ok());
  spdlog::info("before");
  {
    RequestScope scope("abc-123");
    EXPECT_EQ(current_request_id(), "abc-123");
    spdlog::info("inside");
    {
      RequestScope inner("inner");
      spdlog::warn("nested");
    }
    std::thread([] { spdlog::info("other thread"); }).join();
    spdlog::info("back");
  }
  spdlog::debug("below the level");
  info_with_fields("access", {{"status", "200"}, {"route", json_string("/x y")}});
  auto l = lines();
  ASSERT_EQ(l.size(), 6u) << out_.str();  // the debug line is below the level
  EXPECT_NE(l[0].find(" info before"), std::string::npos) << l[0];
  EXPECT_EQ(l[0].find("[req"), std::string::npos);
  EXPECT_NE(l[1].find(" info [req abc-123] inside"), std::string::npos) << l[1];
  EXPECT_NE(l[2].find("[req inner] nested"), std::string::npos) << l[2];
  EXPECT_EQ(l[3].find("[req"), std::string::npos) << l[3];  // another thread: no id
  EXPECT_NE(l[4].find("[req abc-123] back"), std::string::npos) << l[4];
  EXPECT_NE(l[5].find("info access status=200 route=\"/x y\""), std::string::npos) << l[5];
  EXPECT_TRUE(current_request_id().empty());
}

TEST_F(LogTest, JsonLines) {
  ASSERT_TRUE(configure("json", "info").is_ok());
  {
    RequestScope scope("r1");
    spdlog::error("bad \"quote\" and \xff byte");
  }
  spdlog::info("plain");
  info_with_fields("access", {{"status", "404"}, {"latency_ms", "1.5"}, {"collection", "null"}});
  auto l = lines();
  ASSERT_EQ(l.size(), 3u) << out_.str();
  std::vector<nlohmann::json> j;
  for (const auto& line : l) {
    j.push_back(nlohmann::json::parse(line, nullptr, false));
    ASSERT_FALSE(j.back().is_discarded()) << line;
  }
  EXPECT_EQ(j[0]["level"], "error");
  EXPECT_EQ(j[0]["request_id"], "r1");
  EXPECT_EQ(j[0]["msg"].get<std::string>().substr(0, 19), "bad \"quote\" and \xef\xbf\xbd");
  const std::string t = j[0]["time"];
  EXPECT_EQ(t.size(), 24u) << t;  // 2026-12-02T10:00:00.123Z
  EXPECT_EQ(t.back(), 'Z');
  EXPECT_FALSE(j[1].contains("request_id"));
  EXPECT_EQ(j[1]["msg"], "plain");
  EXPECT_EQ(j[2]["status"], 404);
  EXPECT_EQ(j[2]["latency_ms"], 1.5);
  EXPECT_TRUE(j[2]["collection"].is_null());
  EXPECT_FALSE(configure("xml", "info").is_ok());
}

}  // namespace
}  // namespace qsearch::log
