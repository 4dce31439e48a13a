// POST /v1/embeddings end to end (server subprocess, test model, CPU engine), and the official
// openai npm client against it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "embed/tokenizer/tokenizer.h"
#include "server_util.h"

namespace qsearch::testing {
namespace {

constexpr int kHidden = 128;  // the tiny test model

std::vector<float> floats(const json& j) { return j.get<std::vector<float>>(); }

std::vector<float> decode_base64(const std::string& s) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
  };
  std::string bytes;
  int buf = 0, bits = 0;
  for (char c : s) {
    int v = val(c);
    if (v < 0) break;
    buf = (buf << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      bytes += static_cast<char>((buf >> bits) & 0xFF);
    }
  }
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

double norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += double(x) * x;
  return std::sqrt(s);
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol = 1e-5f) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], tol) << "component " << i;
}

class Embeddings : public SharedServerTest {
 protected:
  static json embed(const json& body, int expect_status = 200) {
    HttpResult r = s().post("/v1/embeddings", body);
    EXPECT_EQ(r.status, expect_status) << r.body;
    return r.json_body();
  }
};

TEST_F(Embeddings, ResponseShapeUsageAndModelEcho) {
  json r = embed({{"input", "hello world"}, {"model", "whatever-name"}});
  EXPECT_EQ(r["object"], "list");
  EXPECT_EQ(r["model"], "whatever-name");
  ASSERT_EQ(r["data"].size(), 1u);
  EXPECT_EQ(r["data"][0]["object"], "embedding");
  EXPECT_EQ(r["data"][0]["index"], 0);
  auto v = floats(r["data"][0]["embedding"]);
  EXPECT_EQ(v.size(), size_t(kHidden));
  EXPECT_NEAR(norm(v), 1.0, 1e-4);
  EXPECT_GE(r["usage"]["prompt_tokens"].get<int>(), 3);  // "hello", " world", <|endoftext|>
  EXPECT_EQ(r["usage"]["total_tokens"], r["usage"]["prompt_tokens"]);
  // Without "model" the served model's name comes back.
  EXPECT_EQ(embed({{"input", "x"}})["model"], "test-model");
}

TEST_F(Embeddings, BatchEqualsSingleAndOrderIsKept) {
  std::vector<std::string> texts = {"first text", "a second, longer text with more tokens in it",
                                    "third"};
  json batch = embed({{"input", texts}});
  ASSERT_EQ(batch["data"].size(), 3u);
  int total = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(batch["data"][i]["index"], int(i));
    json one = embed({{"input", texts[i]}});
    expect_close(floats(batch["data"][i]["embedding"]), floats(one["data"][0]["embedding"]));
    total += one["usage"]["prompt_tokens"].get<int>();
  }
  EXPECT_EQ(batch["usage"]["prompt_tokens"], total);
}

TEST_F(Embeddings, Base64IsLittleEndianFloat32OfTheSameValues) {
  json f = embed({{"input", {"alpha", "beta"}}, {"encoding_format", "float"}});
  json b = embed({{"input", {"alpha", "beta"}}, {"encoding_format", "base64"}});
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(b["data"][i]["embedding"].is_string());
    EXPECT_EQ(decode_base64(b["data"][i]["embedding"]), floats(f["data"][i]["embedding"]));
  }
}

TEST_F(Embeddings, DimensionsTruncateAndRenormalise) {
  auto full = floats(embed({{"input", "matryoshka"}})["data"][0]["embedding"]);
  auto d32 = floats(embed({{"input", "matryoshka"}, {"dimensions", 32}})["data"][0]["embedding"]);
  ASSERT_EQ(d32.size(), 32u);
  std::vector<float> head(full.begin(), full.begin() + 32);
  double n = norm(head);
  for (auto& x : head) x = static_cast<float>(x / n);
  expect_close(d32, head);
  EXPECT_EQ(floats(embed({{"input", "x"}, {"dimensions", kHidden}})["data"][0]["embedding"]).size(),
            size_t(kHidden));
}

TEST_F(Embeddings, TokenIdInputEqualsTextInput) {
  auto tok = Tokenizer::from_file(test_model_dir() + "/tokenizer.json");
  ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
  auto ids = (*tok)->encode("token ids or text", /*add_special=*/false);
  ASSERT_TRUE(ids.is_ok());
  auto text = floats(embed({{"input", "token ids or text"}})["data"][0]["embedding"]);
  json one = embed({{"input", *ids}});  // one id array
  expect_close(floats(one["data"][0]["embedding"]), text);
  EXPECT_EQ(one["usage"]["prompt_tokens"], int(ids->size()) + 1);  // EOS appended
  json many = embed({{"input", {*ids, {1, 2, 3}}}});  // array of id arrays
  ASSERT_EQ(many["data"].size(), 2u);
  expect_close(floats(many["data"][0]["embedding"]), text);
}

TEST_F(Embeddings, InstructionFormatsTheQuery) {
  auto with = floats(embed({{"input", "what is gravity"}, {"instruction", "Find physics passages"}})
                         ["data"][0]["embedding"]);
  auto formatted = floats(embed({{"input", "Instruct: Find physics passages\nQuery:what is gravity"}})
                              ["data"][0]["embedding"]);
  auto without = floats(embed({{"input", "what is gravity"}})["data"][0]["embedding"]);
  expect_close(with, formatted);
  double diff = 0;
  for (size_t i = 0; i < with.size(); ++i) diff += std::fabs(with[i] - without[i]);
  EXPECT_GT(diff, 1e-3);
}

TEST_F(Embeddings, ErrorsHaveTheRightStatusAndShape) {
  struct Case {
    std::string body;
    int status;
    std::string code;
  };
  std::vector<Case> cases = {
      {R"({})", 400, "invalid_request"},
      {R"({"input": 5})", 400, "invalid_request"},
      {R"({"input": []})", 422, "unprocessable"},
      {R"({"input": ["a", 1]})", 400, "invalid_request"},
      {R"({"input": [[1, 2], "a"]})", 400, "invalid_request"},
      {R"({"input": [[1], [-1]]})", 400, "invalid_request"},
      {R"({"input": [[]]})", 422, "unprocessable"},
      {R"({"input": [1000000000]})", 400, "invalid_request"},  // outside the vocabulary
      {R"({"input": "x", "dimensions": 0})", 422, "unprocessable"},
      {R"({"input": "x", "dimensions": 31})", 422, "unprocessable"},
      {R"({"input": "x", "dimensions": 129})", 422, "unprocessable"},
      {R"({"input": "x", "dimensions": "32"})", 400, "invalid_request"},
      {R"({"input": "x", "encoding_format": "hex"})", 422, "unprocessable"},
      {R"({"input": "x", "instruction": 3})", 400, "invalid_request"},
      {R"([1, 2])", 400, "invalid_request"},
      {R"({"input": "x",})", 400, "invalid_request"},
      {"{\"input\": \"\xff\xfe\"}", 400, "invalid_request"},
      {std::string(100000, '[') + std::string(100000, ']'), 400, "invalid_request"},
      {"", 400, "invalid_request"},
  };
  for (const auto& c : cases) {
    HttpResult r = s().post("/v1/embeddings", c.body);
    EXPECT_EQ(r.status, c.status) << c.body.substr(0, 80) << " -> " << r.body;
    json j = r.json_body();
    ASSERT_TRUE(j.is_object()) << r.body;
    EXPECT_EQ(j["error"]["code"], c.code) << r.body;
    EXPECT_TRUE(j["error"]["message"].is_string());
  }
  // Malformed JSON names the position; invalid UTF-8 says so.
  EXPECT_NE(s().post("/v1/embeddings", R"({"input": "x",})").body.find("column"), std::string::npos);
  EXPECT_NE(s().post("/v1/embeddings", "{\"input\": \"\xff\"}").body.find("UTF-8"), std::string::npos);
  EXPECT_EQ(s().get("/health").status, 200);  // and it is still up
}

TEST(EmbeddingsLimits, BodySizeAndTokenLimits) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {"--max-request-bytes", "4096",
                                              "--max-tokens-per-text", "8", "--truncate", "false"});
  ASSERT_TRUE(server.start()) << server.log();
  std::string big = json({{"input", std::string(5000, 'a')}}).dump();
  HttpResult r = server.post("/v1/embeddings", big);
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_EQ(r.json_body()["error"]["code"], "payload_too_large");
  // Announced with Expect: 100-continue (as curl does for large bodies): refused before the
  // client sends it.
  std::string raw = raw_exchange(server.port(),
                                 "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 40000000\r\n"
                                 "Expect: 100-continue\r\n\r\n");
  EXPECT_EQ(raw.rfind("HTTP/1.1 413", 0), 0u) << raw;
  EXPECT_NE(raw.find("payload_too_large"), std::string::npos) << raw;
  // Within the byte limit, a text over the token limit with truncation off is a 422.
  r = server.post("/v1/embeddings", json({{"input", "one two three four five six seven eight nine ten"}}).dump());
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_NE(r.body.find("truncation is off"), std::string::npos);
  r = server.post("/v1/embeddings", json({{"input", "short"}}).dump());
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(server.stop(), 0);

  // With truncation on, the text is cut to 8 tokens (EOS kept) and usage says so.
  ServerProcess truncating(dir.path() + "/data2", {"--max-tokens-per-text", "8"});
  ASSERT_TRUE(truncating.start()) << truncating.log();
  r = truncating.post("/v1/embeddings", json({{"input", "one two three four five six seven eight nine ten"}}).dump());
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["usage"]["prompt_tokens"], 8);
}

std::string find_node() {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "/usr/bin:/usr/local/bin";
  size_t start = 0;
  while (start <= p.size()) {
    size_t colon = p.find(':', start);
    std::string dir = p.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/node";
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return "";
}

TEST(OpenAiClient, OfficialNpmClientWorksUnchanged) {
  std::string node = find_node();
  ASSERT_FALSE(node.empty()) << "Node.js is required for this test (apt-get install nodejs)";
  std::string node_dir = std::string(QSEARCH_DEPS_DIR) + "/node";
  ASSERT_TRUE(std::filesystem::exists(node_dir + "/node_modules/openai/package.json"))
      << "the openai npm package is missing: run `make deps`";
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {}, {{"QSEARCH_API_KEY", "sk-qsearch-test"}});
  ASSERT_TRUE(server.start()) << server.log();
  std::string cmd = "QSEARCH_URL=http://127.0.0.1:" + std::to_string(server.port()) +
                    " QSEARCH_KEY=sk-qsearch-test QSEARCH_HIDDEN=" + std::to_string(kHidden) +
                    " QSEARCH_NODE_DIR='" + node_dir + "' '" + node + "' '" + QSEARCH_SOURCE_DIR +
                    "/tests/api/openai_client.mjs' 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) output.append(buf, n);
  int rc = pclose(pipe);
  EXPECT_EQ(rc, 0) << output;
  EXPECT_NE(output.find("all checks passed"), std::string::npos) << output;
}

}  // namespace
}  // namespace qsearch::testing
