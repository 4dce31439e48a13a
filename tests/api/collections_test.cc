// Collections, documents, search and NDJSON import end to end (server subprocess, test
// model on the CPU engine).
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "server_util.h"

namespace qsearch::testing {
namespace {

const char* kDefaultInstruction =
    "Given a web search query, retrieve relevant passages that answer the query";

class Collections : public SharedServerTest {
 protected:
  void SetUp() override {
    name_ = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }
  std::string path(const std::string& rest = "") const { return "/collections/" + name_ + rest; }
  void create(json extra = json::object()) {
    extra["name"] = name_;
    HttpResult r = s().post("/collections", extra);
    ASSERT_EQ(r.status, 201) << r.body;
  }
  void put(const std::string& id, const std::string& text, json metadata = json::object()) {
    HttpResult r = s().put(path("/documents/" + url_encode(id)), {{"text", text}, {"metadata", metadata}});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  std::vector<float> embed(const std::string& text, const std::string& instruction, int dim) {
    HttpResult r = s().post("/v1/embeddings", json{{"input", text}, {"instruction", instruction},
                                                   {"dimensions", dim}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json_body()["data"][0]["embedding"].get<std::vector<float>>();
  }
  std::string name_;
};

TEST_F(Collections, CreateGetListDelete) {
  HttpResult r = s().post("/collections", json{{"name", name_}});
  ASSERT_EQ(r.status, 201) << r.body;
  json c = r.json_body();
  EXPECT_EQ(c["name"], name_);
  EXPECT_EQ(c["dimension"], 128);  // default: the hidden size
  EXPECT_EQ(c["metric"], "cosine");
  EXPECT_EQ(c["index"]["type"], "flat");
  EXPECT_EQ(c["query_instruction"], kDefaultInstruction);
  EXPECT_EQ(c["document_count"], 0);
  EXPECT_EQ(c["model"].get<std::string>().rfind("test-model@", 0), 0u) << c["model"];
  EXPECT_EQ(s().post("/collections", json{{"name", name_}}).status, 409);

  json got = s().get(path()).json_body();
  EXPECT_EQ(got["name"], name_);
  EXPECT_TRUE(got.contains("index_type") && got.contains("index_size"));
  EXPECT_EQ(got["index_pending"], 0) << got;  // flat: nothing waits for a graph
  EXPECT_EQ(got["bytes_per_vector"], 0) << got;  // empty
  bool listed = false;
  json list = s().get("/collections").json_body();
  for (const auto& x : list["collections"]) listed |= x["name"] == name_;
  EXPECT_TRUE(listed) << list;

  ASSERT_EQ(s().post("/collections", json{{"name", name_ + "_hnsw"}, {"dimension", 32},
                                          {"metric", "ip"}, {"index", {{"type", "hnsw"}}},
                                          {"query_instruction", "Find it"}, {"max_tokens", 100}})
                .status,
            201);
  json h = s().get(path("_hnsw")).json_body();
  EXPECT_EQ(h["dimension"], 32);
  EXPECT_EQ(h["metric"], "ip");
  EXPECT_EQ(h["index"]["type"], "hnsw");
  EXPECT_EQ(h["query_instruction"], "Find it");
  EXPECT_EQ(h["max_tokens"], 100);

  r = s().del(path());
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(s().get(path()).status, 404);
  EXPECT_EQ(s().del(path()).status, 404);
  EXPECT_EQ(s().get(path()).json_body()["error"]["code"], "not_found");
}

// Index "gpu": on a server without a usable GPU (CI) the collection searches as flat and GET
// says so ("index_type": "flat" and a "fallback_reason"); with one, "index_type" is "gpu".
TEST_F(Collections, GpuIndexReportsItsEffectiveType) {
  create({{"dimension", 64}, {"index", {{"type", "gpu"}}}});
  put("a", "Beijing is the capital of China.");
  put("b", "Cats are mammals.");
  HttpResult r = s().post(path("/search"), json{{"query", "capital of China"}, {"k", 2}});
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.json_body()["results"].size(), 2u);
  json got = s().get(path()).json_body();
  EXPECT_EQ(got["index"]["type"], "gpu");
  EXPECT_EQ(got["index_size"], 2);
  EXPECT_EQ(got["index"]["precision"], "bf16");
  if (got["index_type"] == "gpu") {
    EXPECT_FALSE(got.contains("fallback_reason")) << got;
    // The shards (one per --gpus entry, all visible GPUs here) and device memory apart from
    // index_bytes.
    ASSERT_TRUE(got.contains("devices")) << got;
    int64_t rows = 0;
    for (const auto& d : got["devices"]) rows += d["rows"].get<int64_t>();
    EXPECT_EQ(rows, 2) << got;
    EXPECT_GT(got["device_bytes"].get<int64_t>(), 0) << got;
  } else {
    EXPECT_EQ(got["index_type"], "flat") << got;
    ASSERT_TRUE(got.contains("fallback_reason")) << got;
    EXPECT_FALSE(got["fallback_reason"].get<std::string>().empty());
    EXPECT_FALSE(got.contains("devices")) << got;
  }
  EXPECT_GT(got["index_bytes"].get<int64_t>(), 0) << got;
  EXPECT_EQ(s().post("/collections", json{{"name", name_ + "x"}, {"index", {{"type", "gpu"}, {"m", 4}}}}).status, 422);
  HttpResult bad = s().post("/collections", json{{"name", name_ + "x"}, {"index", {{"type", "gpu"}, {"precision", "fp8"}}}});
  EXPECT_EQ(bad.status, 422);
  EXPECT_NE(bad.body.find("precision"), std::string::npos) << bad.body;
  HttpResult int8 = s().post("/collections", json{{"name", name_ + "x"}, {"dimension", 64},
                                                  {"index", {{"type", "gpu"}, {"precision", "int8"}, {"rescore", 40}}}});
  ASSERT_EQ(int8.status, 201) << int8.body;
  json back = s().get("/collections/" + name_ + "x").json_body();
  EXPECT_EQ(back["index"]["precision"], "int8") << back;
  EXPECT_EQ(back["index"]["rescore"], 40) << back;
  EXPECT_EQ(s().del("/collections/" + name_ + "x").status, 200);
}

TEST_F(Collections, CreateValidation) {
  auto status = [&](json body) { return s().post("/collections", body).status; };
  EXPECT_EQ(status({{"dimension", 64}}), 400);                       // no name
  EXPECT_EQ(status({{"name", "has space"}}), 400);
  EXPECT_EQ(status({{"name", std::string(129, 'a')}}), 400);
  EXPECT_EQ(status({{"name", 5}}), 400);
  EXPECT_EQ(status({{"name", name_}, {"dimension", 16}}), 422);      // < 32
  EXPECT_EQ(status({{"name", name_}, {"dimension", 129}}), 422);     // > hidden
  EXPECT_EQ(status({{"name", name_}, {"dimension", "64"}}), 400);
  EXPECT_EQ(status({{"name", name_}, {"metric", "dot"}}), 422);
  EXPECT_EQ(status({{"name", name_}, {"index", {{"type", "lsh"}}}}), 422);
  EXPECT_EQ(status({{"name", name_}, {"index", "flat"}}), 400);
  EXPECT_EQ(status({{"name", name_}, {"max_tokens", 0}}), 422);
  EXPECT_EQ(status({{"name", name_}, {"dimensions", 64}}), 400);     // typo: unknown field
  EXPECT_EQ(s().get(path()).status, 404);                            // nothing was created
}

TEST_F(Collections, DocumentsPutGetDeleteAndEmbeddingWithoutInstruction) {
  create({{"dimension", 64}});
  HttpResult r = s().put(path("/documents/doc1"),
                         {{"text", "The capital of China is Beijing."}, {"metadata", {{"lang", "en"}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["id"], "doc1");
  EXPECT_GT(r.json_body()["tokens"].get<int>(), 2);
  EXPECT_EQ(r.json_body()["truncated"], false);

  json d = s().get(path("/documents/doc1")).json_body();
  EXPECT_EQ(d["text"], "The capital of China is Beijing.");
  EXPECT_EQ(d["metadata"]["lang"], "en");
  EXPECT_FALSE(d.contains("embedding"));
  json e = s().get(path("/documents/doc1?include=embedding")).json_body();
  auto v = e["embedding"].get<std::vector<float>>();
  ASSERT_EQ(v.size(), 64u);
  // Documents are embedded without an instruction.
  auto expected = embed("The capital of China is Beijing.", "", 64);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(v[i], expected[i], 1e-5);
  EXPECT_EQ(s().get(path("/documents/doc1?include=vectors")).status, 400);

  put("doc1", "replaced text");  // upsert
  EXPECT_EQ(s().get(path("/documents/doc1")).json_body()["text"], "replaced text");
  EXPECT_EQ(s().get(path()).json_body()["document_count"], 1);

  EXPECT_EQ(s().put(path("/documents/x"), {{"metadata", json::object()}}).status, 400);  // no text
  EXPECT_EQ(s().put(path("/documents/x"), {{"text", "t"}, {"metadata", 3}}).status, 400);
  EXPECT_EQ(s().put("/collections/nope/documents/x", {{"text", "t"}}).status, 404);
  EXPECT_EQ(s().get(path("/documents/missing")).status, 404);

  EXPECT_EQ(s().del(path("/documents/doc1")).status, 200);
  EXPECT_EQ(s().get(path("/documents/doc1")).status, 404);
  EXPECT_EQ(s().del(path("/documents/doc1")).status, 404);
  EXPECT_EQ(s().get(path()).json_body()["document_count"], 0);
}

TEST_F(Collections, IdsAreUrlDecodedAndLimitedTo512Bytes) {
  create({{"dimension", 32}});
  for (std::string id : {"a/b/c", "spaces and ?query=1#frag", "100% 文档 \xF0\x9F\x98\x80", "+plus+"}) {
    put(id, "text of " + id);
    HttpResult r = s().get(path("/documents/" + url_encode(id)));
    ASSERT_EQ(r.status, 200) << id << ": " << r.body;
    EXPECT_EQ(r.json_body()["id"], id);
  }
  put(std::string(512, 'x'), "longest id");
  HttpResult r = s().put(path("/documents/" + std::string(513, 'x')), {{"text", "t"}});
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(s().get(path("/documents/%FF%FE")).status, 400);  // not UTF-8
  EXPECT_EQ(s().get(path("/documents/" + std::string(5000, 'y'))).status, 414);
  EXPECT_EQ(s().get(path()).json_body()["document_count"], 5);
}

TEST_F(Collections, BatchUpsertReportsPerItem) {
  create({{"dimension", 32}});
  json docs = json::array({
      {{"id", "a"}, {"text", "first"}, {"metadata", {{"n", 1}}}},
      {{"id", "b"}},                                   // no text
      {{"id", 7}, {"text", "numeric id"}},            // id not a string
      {{"id", std::string(513, 'z')}, {"text", "t"}},  // id too long
      {{"id", "dup"}, {"text", "old"}},
      {{"id", "dup"}, {"text", "new"}},               // the last occurrence wins
      "not an object",
  });
  HttpResult r = s().post(path("/documents"), json{{"documents", docs}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = r.json_body();
  EXPECT_EQ(j["upserted"], 3);
  EXPECT_EQ(j["failed"], 4);
  auto results = j["results"];
  ASSERT_EQ(results.size(), docs.size());
  EXPECT_EQ(results[0]["id"], "a");
  EXPECT_TRUE(results[0].contains("tokens"));
  EXPECT_EQ(results[1]["error"]["code"], "invalid_request");
  EXPECT_EQ(results[2]["error"]["code"], "invalid_request");
  EXPECT_EQ(results[3]["error"]["code"], "unprocessable");
  EXPECT_FALSE(results[4].contains("error"));
  EXPECT_EQ(results[6]["error"]["code"], "invalid_request");
  EXPECT_EQ(s().get(path("/documents/dup")).json_body()["text"], "new");
  EXPECT_EQ(s().get(path()).json_body()["document_count"], 2);
  EXPECT_EQ(s().post(path("/documents"), json{{"docs", docs}}).status, 400);
  EXPECT_EQ(s().post("/collections/nope/documents", json{{"documents", docs}}).status, 404);
}

TEST_F(Collections, SearchByQueryVectorAndId) {
  create({{"dimension", 64}});
  std::vector<std::string> texts = {"Beijing is the capital of China.", "Paris is in France.",
                                    "Gravity attracts bodies.", "Rust is a programming language.",
                                    "Cats are mammals.", "The Yangtze is a river in China."};
  for (size_t i = 0; i < texts.size(); ++i)
    put("d" + std::to_string(i), texts[i], {{"group", i % 2 == 0 ? "even" : "odd"}, {"i", i}});

  HttpResult r = s().post(path("/search"), json{{"query", "capital of China"}, {"k", 3}});
  ASSERT_EQ(r.status, 200) << r.body;
  json by_query = r.json_body();
  ASSERT_EQ(by_query["results"].size(), 3u);
  EXPECT_TRUE(by_query["took_ms"].is_number());
  for (const auto& hit : by_query["results"]) {
    EXPECT_TRUE(hit.contains("text") && hit.contains("metadata") && hit.contains("score"));
  }
  for (size_t i = 1; i < 3; ++i)
    EXPECT_GE(by_query["results"][i - 1]["score"].get<double>(), by_query["results"][i]["score"].get<double>());

  // The query is embedded with the collection's instruction: the same as searching with the
  // vector /v1/embeddings gives for that instruction.
  auto qv = embed("capital of China", kDefaultInstruction, 64);
  json by_vector = s().post(path("/search"), json{{"vector", qv}, {"k", 3}}).json_body();
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(by_vector["results"][i]["id"], by_query["results"][i]["id"]);
    EXPECT_NEAR(by_vector["results"][i]["score"].get<double>(),
                by_query["results"][i]["score"].get<double>(), 1e-4);
  }
  // An instruction override changes the query vector.
  auto plain = embed("capital of China", "", 64);
  json overridden = s().post(path("/search"), json{{"query", "capital of China"}, {"instruction", ""}, {"k", 6}}).json_body();
  json plain_hits = s().post(path("/search"), json{{"vector", plain}, {"k", 6}}).json_body();
  for (size_t i = 0; i < 6; ++i)
    EXPECT_NEAR(overridden["results"][i]["score"].get<double>(),
                plain_hits["results"][i]["score"].get<double>(), 1e-4);

  // By id: the document itself is left out.
  json by_id = s().post(path("/search"), json{{"id", "d0"}, {"k", 10}}).json_body();
  EXPECT_EQ(by_id["results"].size(), texts.size() - 1);
  for (const auto& hit : by_id["results"]) EXPECT_NE(hit["id"], "d0");

  // Filter and include.
  json filtered = s().post(path("/search"), json{{"query", "China"}, {"k", 10}, {"filter", {{"group", "odd"}}},
                                                 {"include", json::array()}}).json_body();
  EXPECT_EQ(filtered["results"].size(), 3u);
  for (const auto& hit : filtered["results"]) {
    EXPECT_FALSE(hit.contains("text"));
    EXPECT_FALSE(hit.contains("metadata"));
    int i = std::stoi(hit["id"].get<std::string>().substr(1));
    EXPECT_EQ(i % 2, 1);
  }
  json text_only = s().post(path("/search"), json{{"query", "x"}, {"include", {"text"}}}).json_body();
  EXPECT_TRUE(text_only["results"][0].contains("text"));
  EXPECT_FALSE(text_only["results"][0].contains("metadata"));

  auto status = [&](json body) { return s().post(path("/search"), body).status; };
  EXPECT_EQ(status({{"query", "x"}, {"k", 0}}), 422);
  EXPECT_EQ(status({{"query", "x"}, {"k", 1001}}), 422);
  EXPECT_EQ(status({{"query", "x"}, {"k", 1000}}), 200);
  EXPECT_EQ(status({{"k", 3}}), 400);                                 // none of query/vector/id
  EXPECT_EQ(status({{"query", "x"}, {"id", "d1"}}), 400);             // two of them
  EXPECT_EQ(status({{"vector", std::vector<float>(63, 0.1f)}}), 422);  // wrong dimension
  EXPECT_EQ(status({{"vector", std::vector<float>(64, 0.0f)}}), 422);  // zero vector, cosine
  EXPECT_EQ(status({{"vector", "abc"}}), 400);
  EXPECT_EQ(status({{"id", "missing"}}), 404);
  EXPECT_EQ(status({{"query", "x"}, {"filter", "group=odd"}}), 400);
  EXPECT_EQ(status({{"query", "x"}, {"include", {"embedding"}}}), 400);
  EXPECT_EQ(s().post("/collections/nope/search", json{{"query", "x"}}).status, 404);
}

std::string ndjson(int from, int to) {
  std::string out;
  for (int i = from; i < to; ++i)
    out += json({{"id", "n" + std::to_string(i)}, {"text", "imported document " + std::to_string(i)},
                 {"metadata", {{"i", i}}}}).dump() + "\n";
  return out;
}

TEST_F(Collections, ImportNdjsonWithPerLineErrors) {
  create({{"dimension", 32}});
  std::string body = ndjson(0, 300);
  body += "\n   \n";                                          // blank lines: skipped
  body += "{not json}\n";                                     // line 303
  body += R"({"id": "no-text"})" "\n";                        // line 304
  body += R"({"id": "crlf", "text": "windows line"})" "\r\n";  // line 305
  body += R"({"id": "last", "text": "no final newline"})";    // line 306
  HttpResult r = s().post(path("/import"), body, "", 120);
  ASSERT_EQ(r.status, 200) << r.body;
  json j = r.json_body();
  EXPECT_EQ(j["lines"], 306);
  EXPECT_EQ(j["upserted"], 302);
  EXPECT_EQ(j["failed"], 2);
  ASSERT_EQ(j["errors"].size(), 2u);
  EXPECT_EQ(j["errors"][0]["line"], 303);
  EXPECT_EQ(j["errors"][1]["line"], 304);
  EXPECT_EQ(j["errors"][1]["id"], "no-text");
  EXPECT_EQ(s().get(path()).json_body()["document_count"], 302);
  EXPECT_EQ(s().get(path("/documents/crlf")).json_body()["text"], "windows line");
  EXPECT_EQ(s().get(path("/documents/n299")).json_body()["metadata"]["i"], 299);
  EXPECT_EQ(s().post("/collections/nope/import", ndjson(0, 2)).status, 404);
}

TEST(CollectionsImport, StreamsChunkedBodiesLargerThanTheRequestLimit) {
  ScratchDir dir;
  ServerProcess server(dir.path() + "/data", {"--max-request-bytes", "4096"});
  ASSERT_TRUE(server.start()) << server.log();
  ASSERT_EQ(server.post("/collections", json{{"name", "big"}, {"dimension", 32}}).status, 201);
  // 2000 documents (about 170 KB, 40 times the body limit) sent chunked, without a length.
  httplib::Client client("127.0.0.1", server.port());
  client.set_read_timeout(300);
  client.set_write_timeout(300);
  int sent = 0;
  auto res = client.Post(
      "/collections/big/import",
      [&](size_t, httplib::DataSink& sink) {
        if (sent >= 2000) {
          sink.done();
          return true;
        }
        std::string piece = ndjson(sent, sent + 100);
        sent += 100;
        sink.write(piece.data(), piece.size());
        return true;
      },
      "application/x-ndjson");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  ASSERT_EQ(res->status, 200) << res->body;
  json j = json::parse(res->body);
  EXPECT_EQ(j["upserted"], 2000);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(server.get("/collections/big").json_body()["document_count"], 2000);
  // A single line longer than the limit is a per-line 413; the lines around it are imported.
  std::string body = ndjson(5000, 5001) +
                     json({{"id", "huge"}, {"text", std::string(5000, 'h')}}).dump() + "\n" +
                     ndjson(5001, 5002);
  HttpResult r = server.post("/collections/big/import", body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json_body()["upserted"], 2);
  EXPECT_EQ(r.json_body()["errors"][0]["line"], 2);
  EXPECT_EQ(r.json_body()["errors"][0]["error"]["code"], "payload_too_large");
  // A plain (non-streamed) body over the limit is refused with 413.
  r = server.post("/collections/big/documents", json{{"documents", {{{"id", "x"}, {"text", std::string(5000, 'x')}}}}});
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(server.metric("qsearch_documents{collection=\"big\"}"), 2002);
}

}  // namespace
}  // namespace qsearch::testing
