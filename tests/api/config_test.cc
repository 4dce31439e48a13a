// qsearch serve's configuration: defaults, precedence (flags > env > file > defaults),
// validation, key files; and the JSON/UTF-8/base64 helpers of the HTTP layer.
#include "service/config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "api/errors.h"
#include "api/json_io.h"
#include "server_util.h"

namespace qsearch {
namespace {

using testing::ScratchDir;

std::string write(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
  return path;
}

TEST(ServerConfig, Defaults) {
  ConfigSources sources;
  auto c = load_server_config({}, {}, &sources);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->model, "./models/Qwen3-Embedding-0.6B");
  EXPECT_EQ(c->host, "127.0.0.1");
  EXPECT_EQ(c->port, 8080);
  EXPECT_EQ(c->data_dir, "./qsearch-data");
  EXPECT_EQ(c->device, "auto");
  EXPECT_EQ(c->dtype, "bf16");
  EXPECT_TRUE(c->truncate);
  EXPECT_FALSE(c->sync);
  EXPECT_FALSE(c->auth_enabled());
  EXPECT_EQ(sources["port"], "default");
}

TEST(ServerConfig, ReadTimeout) {
  auto d = load_server_config({}, {});
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(d->read_timeout, 10);
  auto f = load_server_config({"--read-timeout", "3"}, {{"QSEARCH_READ_TIMEOUT", "7"}});
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_EQ(f->read_timeout, 3);
  auto e = load_server_config({}, {{"QSEARCH_READ_TIMEOUT", "7"}});
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  EXPECT_EQ(e->read_timeout, 7);
  for (const char* bad : {"0", "-1", "3601", "ten"}) {
    auto c = load_server_config({"--read-timeout", bad}, {});
    ASSERT_FALSE(c.is_ok()) << bad;
    EXPECT_NE(c.status().to_string().find("read-timeout"), std::string::npos)
        << c.status().to_string();
  }
}

TEST(ServerConfig, FlagsBeatEnvironmentBeatsFileBeatsDefaults) {
  ScratchDir dir;
  std::string file = write(dir.path() + "/c.json",
                           R"({"port": 1111, "host": "0.0.0.0", "data_dir": "/file", "threads": 3,
                               "sync": true, "truncate": false})");
  std::map<std::string, std::string> env = {{"QSEARCH_CONFIG", file},
                                            {"QSEARCH_PORT", "2222"},
                                            {"QSEARCH_DATA_DIR", "/env"},
                                            {"QSEARCH_MODEL", "/models/m"}};
  ConfigSources sources;
  auto c = load_server_config({"--port", "3333", "--log-level=debug"}, env, &sources);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->port, 3333);           // flag
  EXPECT_EQ(c->data_dir, "/env");     // env over file
  EXPECT_EQ(c->model, "/models/m");   // env over default
  EXPECT_EQ(c->host, "0.0.0.0");      // file over default
  EXPECT_EQ(c->threads, 3);
  EXPECT_TRUE(c->sync);
  EXPECT_FALSE(c->truncate);
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(sources["port"], "flag");
  EXPECT_EQ(sources["data_dir"], "env");
  EXPECT_EQ(sources["host"], "file");
  EXPECT_EQ(c->config_file, file);
  // --config on the command line wins over QSEARCH_CONFIG.
  std::string other = write(dir.path() + "/d.json", R"({"host": "10.0.0.1"})");
  auto d = load_server_config({"--config", other}, env);
  ASSERT_TRUE(d.is_ok());
  EXPECT_EQ(d->host, "10.0.0.1");
  EXPECT_EQ(d->port, 2222);
}

TEST(ServerConfig, DtypeFromFlagAndEnvironment) {
  auto flag = load_server_config({"--dtype", "fp8"}, {});
  ASSERT_TRUE(flag.is_ok()) << flag.status().to_string();
  EXPECT_EQ(flag->dtype, "fp8");
  auto env = load_server_config({}, {{"QSEARCH_DTYPE", "fp8"}});
  ASSERT_TRUE(env.is_ok()) << env.status().to_string();
  EXPECT_EQ(env->dtype, "fp8");
  EXPECT_NE(server_config_help().find("--dtype"), std::string::npos);
}

TEST(ServerConfig, RejectsBadValuesWithAClearMessage) {
  auto bad = [](std::vector<std::string> args, std::map<std::string, std::string> env = {}) {
    auto c = load_server_config(args, env);
    EXPECT_FALSE(c.is_ok());
    return c.is_ok() ? std::string() : c.status().message();
  };
  EXPECT_NE(bad({"--port", "70000"}).find("out of range"), std::string::npos);
  EXPECT_NE(bad({"--port", "80x"}).find("integer"), std::string::npos);
  EXPECT_NE(bad({"--device", "tpu"}).find("not one of"), std::string::npos);
  EXPECT_NE(bad({"--dtype", "fp16"}).find("not one of"), std::string::npos);
  EXPECT_NE(bad({"--bogus", "1"}).find("unknown option --bogus"), std::string::npos);
  EXPECT_NE(bad({"--port"}).find("needs a value"), std::string::npos);
  EXPECT_NE(bad({"--sync=yes"}).find("takes no value"), std::string::npos);
  EXPECT_NE(bad({}, {{"QSEARCH_TRUNCATE", "maybe"}}).find("QSEARCH_TRUNCATE"), std::string::npos);
  EXPECT_NE(bad({"--log-level", "loud"}).find("log_level"), std::string::npos);
  EXPECT_NE(bad({"stray"}).find("unexpected argument"), std::string::npos);
  EXPECT_NE(bad({"--config", "/nonexistent.json"}).find("cannot open"), std::string::npos);
  ScratchDir dir;
  EXPECT_NE(bad({"--config", write(dir.path() + "/a.json", R"({"port": "80"})")}).find("integer"),
            std::string::npos);
  EXPECT_NE(bad({"--config", write(dir.path() + "/b.json", R"({"prot": 80})")}).find("unknown option"),
            std::string::npos);
  EXPECT_NE(bad({"--config", write(dir.path() + "/c.json", "{")}).find("config file"),
            std::string::npos);
}

TEST(ServerConfig, KeysFromFlagsEnvironmentAndKeyFile) {
  ScratchDir dir;
  std::string keys = write(dir.path() + "/keys", "# comment\nadmin A1\n\nread R1\nread R2\n");
  auto c = load_server_config({"--key-file", keys}, {{"QSEARCH_API_KEY", "A0"}});
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_TRUE(c->auth_enabled());
  EXPECT_EQ(c->admin_keys, (std::vector<std::string>{"A0", "A1"}));
  EXPECT_EQ(c->read_keys, (std::vector<std::string>{"R1", "R2"}));
  std::string broken = write(dir.path() + "/broken", "admin\n");
  auto b = load_server_config({"--key-file", broken}, {});
  ASSERT_FALSE(b.is_ok());
  EXPECT_NE(b.status().message().find("line 1"), std::string::npos);
}

TEST(ServerConfig, HelpListsEveryOptionWithItsVariable) {
  std::string help = server_config_help();
  for (const char* s : {"--model", "QSEARCH_MODEL", "--device", "--data-dir", "QSEARCH_DATA_DIR",
                        "--host", "--port", "--api-key", "QSEARCH_API_KEY", "--read-key",
                        "QSEARCH_READ_KEY", "--key-file", "QSEARCH_KEY_FILE", "--max-batch-tokens",
                        "--queue-limit-tokens", "--threads", "--max-request-bytes",
                        "--max-tokens-per-text", "--truncate", "--log-level", "--sync",
                        "--config", "QSEARCH_CONFIG"})
    EXPECT_NE(help.find(s), std::string::npos) << s;
}

TEST(ApiJson, DepthLimitPositionsAndUtf8) {
  using api::parse_json;
  std::string deep(api::kMaxJsonDepth + 1, '[');
  auto d = parse_json(deep);
  ASSERT_FALSE(d.is_ok());
  EXPECT_NE(d.status().message().find("nested deeper"), std::string::npos);
  // Brackets inside strings do not count.
  auto s = parse_json("{\"a\": \"" + std::string(1000, '[') + "\"}");
  EXPECT_TRUE(s.is_ok());
  std::string ok(api::kMaxJsonDepth, '[');
  ok += std::string(api::kMaxJsonDepth, ']');
  EXPECT_TRUE(parse_json(ok).is_ok());
  auto m = parse_json("{\"a\": 1,}");
  ASSERT_FALSE(m.is_ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("byte"), std::string::npos);
  EXPECT_NE(m.status().message().find("column"), std::string::npos);
  auto u = parse_json("{\"a\": \"\xff\"}");
  ASSERT_FALSE(u.is_ok());
  EXPECT_NE(u.status().message().find("UTF-8"), std::string::npos);

  EXPECT_EQ(api::invalid_utf8_offset("h\xc3\xa9llo"), std::string::npos);
  EXPECT_EQ(api::invalid_utf8_offset("ab\xc3"), 2u);                // truncated
  EXPECT_EQ(api::invalid_utf8_offset("a\xed\xa0\x80"), 1u);         // surrogate
  EXPECT_EQ(api::invalid_utf8_offset("\xe0\x80\x80"), 0u);          // overlong
  EXPECT_EQ(api::invalid_utf8_offset("\xf0\x9f\x98\x80"), std::string::npos);
}

TEST(ApiJson, Base64) {
  EXPECT_EQ(api::base64_encode("", 0), "");
  EXPECT_EQ(api::base64_encode("f", 1), "Zg==");
  EXPECT_EQ(api::base64_encode("fo", 2), "Zm8=");
  EXPECT_EQ(api::base64_encode("foo", 3), "Zm9v");
  EXPECT_EQ(api::base64_encode("foobar", 6), "Zm9vYmFy");
  float one = 1.0f;  // 00 00 80 3f little-endian
  EXPECT_EQ(api::base64_encode(&one, 4), "AACAPw==");
}

TEST(ApiErrors, EveryStatusCodeHasItsHttpStatus) {
  EXPECT_EQ(api::http_error_for(StatusCode::kInvalidArgument).status, 400);
  EXPECT_EQ(api::http_error_for(StatusCode::kNotFound).status, 404);
  EXPECT_EQ(api::http_error_for(StatusCode::kAlreadyExists).status, 409);
  EXPECT_EQ(api::http_error_for(StatusCode::kPayloadTooLarge).status, 413);
  EXPECT_EQ(api::http_error_for(StatusCode::kUnprocessable).status, 422);
  EXPECT_EQ(api::http_error_for(StatusCode::kResourceExhausted).status, 429);
  EXPECT_EQ(api::http_error_for(StatusCode::kUnavailable).status, 503);
  EXPECT_EQ(api::http_error_for(StatusCode::kInternal).status, 500);
  EXPECT_EQ(api::http_error_for(StatusCode::kIOError).status, 500);
  auto body = nlohmann::json::parse(api::error_body("x", "bad \xff"));
  EXPECT_EQ(body["error"]["code"], "x");
}

}  // namespace
}  // namespace qsearch
