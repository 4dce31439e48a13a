// Issue 11, the model rule: a collection built with another model refuses writes that embed
// text and text queries with 409 "model_mismatch" until POST /collections/{name}/reembed has
// re-embedded it from its stored texts (progress in GET collection and GET /jobs; resumable
// after kill -9); writes are bound to the collection instance they started on (an import or a
// re-embed into a collection deleted and re-created meanwhile writes nothing).
//
// "Another model": the test model's generator with another seed (same files, same sizes: the
// identity tells them apart by contents).
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "api/server_util.h"
#include "embed/model/test_model.h"

namespace qsearch::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Another model with the same files and sizes as the test model: the test model's generator
// with seed 43 (the test model is seed 42), so every weight differs.
std::string other_model(const std::string& dir) {
  TestModelOptions o;
  o.tokenizer_path = std::string(QSEARCH_DEPS_DIR) + "/qwen3/tokenizer.json";
  o.out_dir = dir + "/other-model";
  o.seed = 43;
  auto info = write_test_model(o);
  EXPECT_TRUE(info.is_ok()) << info.status().to_string();
  EXPECT_EQ(fs::file_size(o.out_dir + "/model.safetensors"),
            fs::file_size(test_model_dir() + "/model.safetensors"));
  return o.out_dir;
}

// Largest absolute difference between two vectors given as JSON arrays.
double max_diff(const json& a, const json& b) {
  if (!a.is_array() || !b.is_array() || a.size() != b.size()) return 1e9;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(a[i].get<double>() - b[i].get<double>()));
  return m;
}

json docs_json(int from, int to) {
  json list = json::array();
  for (int i = from; i < to; ++i) {
    char id[16];
    std::snprintf(id, sizeof id, "d%04d", i);
    list.push_back({{"id", id},
                    {"text", "document number " + std::to_string(i) + " about topic " +
                                 std::to_string(i % 7)},
                    {"metadata", {{"n", i}}}});
  }
  return list;
}

void add_docs(ServerProcess& s, const std::string& collection, int from, int to) {
  for (int i = from; i < to; i += 200) {
    HttpResult r = s.post("/collections/" + collection + "/documents",
                          json{{"documents", docs_json(i, std::min(to, i + 200))}}.dump(), "", 120);
    ASSERT_EQ(r.status, 200) << r.body;
  }
}

void create(ServerProcess& s, const std::string& name) {
  HttpResult r = s.post("/collections", json{{"name", name}});
  ASSERT_EQ(r.status, 201) << r.body;
}

json get_json(ServerProcess& s, const std::string& path) {
  HttpResult r = s.get(path);
  EXPECT_EQ(r.status, 200) << path << ": " << r.body;
  return r.json_body();
}

// Polls GET /collections/{name} until "reembed"."state" is not "running" (or the time is up).
json wait_reembed(ServerProcess& s, const std::string& name, double timeout_s = 60) {
  const auto end = Clock::now() + std::chrono::duration<double>(timeout_s);
  json c;
  while (Clock::now() < end) {
    c = get_json(s, "/collections/" + name);
    if (c.contains("reembed") && c["reembed"]["state"] != "running") return c;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "re-embed of " << name << " still running: " << c.dump();
  return c;
}

// Every document's id, text, metadata and embedding, in id order.
json all_documents(ServerProcess& s, const std::string& name) {
  json out = json::array();
  json body = {{"limit", 1000}, {"include", {"text", "metadata", "embedding"}}};
  for (;;) {
    HttpResult r = s.post("/collections/" + name + "/documents/scroll", body);
    EXPECT_EQ(r.status, 200) << r.body;
    json page = r.json_body();
    for (auto& d : page["documents"]) out.push_back(d);
    if (page["next_cursor"].is_null()) break;
    body["cursor"] = page["next_cursor"];
  }
  return out;
}

// Writes these documents (id, text, metadata) into `collection` in requests of 64, the page size
// of the re-embed job: the CPU engine then sees the same batches, and equal batches give
// bit-identical vectors.
void write_in_pages(ServerProcess& s, const std::string& collection, const json& docs,
                    size_t from, size_t to) {
  for (size_t i = from; i < to; i += 64) {
    json part(docs.begin() + i, docs.begin() + std::min(to, i + 64));
    HttpResult r = s.post("/collections/" + collection + "/documents",
                          json{{"documents", part}}.dump(), "", 120);
    ASSERT_EQ(r.status, 200) << r.body;
  }
}

void expect_mismatch(const HttpResult& r, const std::string& stored, const std::string& served,
                     const std::string& what) {
  EXPECT_EQ(r.status, 409) << what << ": " << r.body;
  json e = r.json_body();
  EXPECT_EQ(e["error"]["code"], "model_mismatch") << what << ": " << r.body;
  const std::string m = e["error"]["message"].is_string() ? e["error"]["message"].get<std::string>() : "";
  EXPECT_NE(m.find(stored), std::string::npos) << what << ": " << m;
  EXPECT_NE(m.find(served), std::string::npos) << what << ": " << m;
  EXPECT_NE(m.find("/reembed"), std::string::npos) << what << ": " << m;
}

TEST(ModelRule, MismatchRefusesTextWritesAndQueriesUntilReembedded) {
  ScratchDir dir;
  const std::string data = dir.path() + "/data";
  const std::string model_b = other_model(dir.path());
  std::string identity_a;
  {
    ServerProcess a(data);
    ASSERT_TRUE(a.start()) << a.start_error();
    create(a, "kb");
    add_docs(a, "kb", 0, 100);
    identity_a = get_json(a, "/collections/kb")["model"];
    EXPECT_EQ(get_json(a, "/collections/kb")["model_matches"], true);
    ASSERT_EQ(a.stop(), 0);
  }
  ServerProcess b(data, {"--model", model_b});
  ASSERT_TRUE(b.start()) << b.start_error();
  const std::string identity_b = get_json(b, "/info")["model"]["identity"];
  ASSERT_NE(identity_a, identity_b);
  json c = get_json(b, "/collections/kb");
  EXPECT_EQ(c["model"], identity_a);
  EXPECT_EQ(c["model_matches"], false);
  EXPECT_FALSE(c.contains("reembed"));

  // Refused: writes that embed text, text queries (dense and hybrid).
  expect_mismatch(b.put("/collections/kb/documents/new", json{{"text", "a new one"}}), identity_a,
                  identity_b, "PUT");
  expect_mismatch(b.post("/collections/kb/documents", json{{"documents", docs_json(200, 202)}}),
                  identity_a, identity_b, "batch");
  expect_mismatch(b.post("/collections/kb/import",
                         std::string("{\"id\":\"i1\",\"text\":\"imported\"}\n")),
                  identity_a, identity_b, "import");
  expect_mismatch(b.post("/collections/kb/search", json{{"query", "topic 3"}}), identity_a,
                  identity_b, "dense text search");
  expect_mismatch(b.post("/collections/kb/search", json{{"query", "topic 3"}, {"mode", "hybrid"}}),
                  identity_a, identity_b, "hybrid search");
  // Allowed: queries that need no model, reads, deletes, metadata updates.
  json stored = all_documents(b, "kb");
  ASSERT_EQ(stored.size(), 100u);
  EXPECT_EQ(b.post("/collections/kb/search", json{{"query", "topic"}, {"mode", "lexical"}}).status, 200);
  EXPECT_EQ(b.post("/collections/kb/search", json{{"vector", stored[0]["embedding"]}}).status, 200);
  EXPECT_EQ(b.post("/collections/kb/search", json{{"id", "d0001"}}).status, 200);
  EXPECT_EQ(b.get("/collections/kb/documents/d0002").status, 200);
  EXPECT_EQ(b.del("/collections/kb/documents/d0099").status, 200);
  EXPECT_EQ(b.request("PATCH", "/collections/kb/documents/d0098",
                      json{{"metadata", {{"fixed", true}}}}.dump())
                .status,
            200);
  EXPECT_EQ(b.post("/collections/kb/count", json::object()).json_body()["count"], 99);

  // The re-embed: 202 with a job, then the collection works again.
  HttpResult started = b.post("/collections/kb/reembed", "");
  ASSERT_EQ(started.status, 202) << started.body;
  const uint64_t job = started.json_body()["job"];
  c = wait_reembed(b, "kb");
  EXPECT_EQ(c["reembed"]["state"], "done") << c.dump();
  EXPECT_EQ(c["reembed"]["done"], 99);
  EXPECT_EQ(c["reembed"]["total"], 99);
  EXPECT_EQ(c["reembed"]["job"], job);
  EXPECT_GT(c["reembed"]["started_at"].get<double>(), 1.7e9);
  EXPECT_EQ(c["model"], identity_b);
  EXPECT_EQ(c["model_matches"], true);
  json jobs = get_json(b, "/jobs");
  bool listed = false;
  for (const auto& j : jobs["jobs"])
    if (j["id"] == job) {
      listed = true;
      EXPECT_EQ(j["kind"], "reembed");
      EXPECT_EQ(j["state"], "done");
      EXPECT_EQ(j["done"], 99);
    }
  EXPECT_TRUE(listed) << jobs.dump();
  EXPECT_EQ(b.post("/collections/kb/search", json{{"query", "topic 3"}}).status, 200);
  EXPECT_EQ(b.put("/collections/kb/documents/new", json{{"text", "a new one"}}).status, 200);
  // A second re-embed has nothing to do.
  EXPECT_EQ(b.post("/collections/kb/reembed", "").status, 409);

  // Stored vectors equal a fresh embed of the same texts by the served model, bit for bit; ids,
  // texts and metadata (the PATCH included) are unchanged.
  create(b, "fresh");
  json texts = json::array();
  json after = all_documents(b, "kb");
  ASSERT_EQ(after.size(), 100u);  // 99 + "new"
  for (const auto& d : after)
    texts.push_back({{"id", d["id"]}, {"text", d["text"]}, {"metadata", d["metadata"]}});
  write_in_pages(b, "fresh", texts, 0, 99);    // as the job's pages: 64, then 35
  write_in_pages(b, "fresh", texts, 99, 100);  // "new", written alone by PUT
  json fresh = all_documents(b, "fresh");
  ASSERT_EQ(fresh.size(), after.size());
  size_t changed = 0;
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i]["id"], fresh[i]["id"]);
    EXPECT_EQ(after[i]["embedding"], fresh[i]["embedding"]) << after[i]["id"];
    if (i < 99) {
      EXPECT_EQ(after[i]["text"], stored[i]["text"]);
      if (max_diff(after[i]["embedding"], stored[i]["embedding"]) > 1e-2) ++changed;
    }
  }
  EXPECT_EQ(changed, 99u) << "every vector was replaced by model B's";
  EXPECT_EQ(after[98]["metadata"], json({{"n", 98}, {"fixed", true}}));

  // Durable: after a restart the collection still matches.
  ASSERT_EQ(b.stop(), 0);
  ASSERT_TRUE(b.start()) << b.start_error();
  EXPECT_EQ(get_json(b, "/collections/kb")["model_matches"], true);
}

TEST(ModelRule, ReembedResumesAfterKill9) {
  ScratchDir dir;
  const std::string data = dir.path() + "/data";
  const std::string model_b = other_model(dir.path());
  {
    ServerProcess a(data);
    ASSERT_TRUE(a.start()) << a.start_error();
    create(a, "big");
    add_docs(a, "big", 0, 600);
    ASSERT_EQ(a.stop(), 0);
  }
  // Slow batches: the job is still running when it is killed.
  ServerProcess b(data, {"--model", model_b, "--debug-batch-delay-ms", "30"});
  ASSERT_TRUE(b.start()) << b.start_error();
  const json before = all_documents(b, "big");  // model A's vectors
  ASSERT_EQ(before.size(), 600u);
  HttpResult started = b.post("/collections/big/reembed", "{}");
  ASSERT_EQ(started.status, 202) << started.body;
  EXPECT_EQ(b.post("/collections/big/reembed", "").status, 409) << "a second one while running";
  // Writes are allowed while it runs (embedded with the served model); text queries are not.
  EXPECT_EQ(b.put("/collections/big/documents/d0599", json{{"text", "rewritten meanwhile"}}).status,
            200);
  EXPECT_EQ(b.post("/collections/big/search", json{{"query", "topic"}}).status, 409);
  json c;
  const auto end = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < end) {
    c = get_json(b, "/collections/big");
    if (c["reembed"]["done"].get<int64_t>() >= 192) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(c["reembed"]["state"], "running") << c.dump();
  b.kill9();

  ASSERT_TRUE(b.start()) << b.start_error();
  c = get_json(b, "/collections/big");
  EXPECT_EQ(c["model_matches"], false);
  ASSERT_TRUE(c.contains("reembed")) << c.dump();
  EXPECT_EQ(c["reembed"]["state"], "interrupted");
  const int64_t done_before = c["reembed"]["done"];
  EXPECT_GE(done_before, 192);
  EXPECT_LT(done_before, 600);
  EXPECT_EQ(done_before % 64, 0) << "the cursor moves a page at a time";
  EXPECT_EQ(c["reembed"]["total"], 600);
  EXPECT_EQ(b.post("/collections/big/search", json{{"query", "topic"}}).status, 409);

  ASSERT_EQ(b.post("/collections/big/reembed", "").status, 202);
  c = wait_reembed(b, "big", 120);
  EXPECT_EQ(c["reembed"]["state"], "done") << c.dump();
  // Resumed after the cursor: the documents done before were not embedded again.
  EXPECT_EQ(c["reembed"]["done"], 600);
  EXPECT_NE(b.log().find("resumed"), std::string::npos);
  EXPECT_EQ(c["model_matches"], true);
  EXPECT_EQ(c["document_count"], 600);
  // The document written meanwhile kept its new text.
  EXPECT_EQ(get_json(b, "/collections/big/documents/d0599")["text"], "rewritten meanwhile");
  // Every vector is model B's: equal to a fresh embed of the same text.
  json after = all_documents(b, "big");
  create(b, "fresh");
  json texts = json::array();
  for (const auto& d : after) texts.push_back({{"id", d["id"]}, {"text", d["text"]}});
  write_in_pages(b, "fresh", texts, 0, texts.size());
  json fresh = all_documents(b, "fresh");
  ASSERT_EQ(fresh.size(), 600u);
  // The PUT made while the job ran may have shared an engine batch with a page of the job, and
  // another batch composition changes the last bits: equal within 1e-5, and far from model A's.
  size_t bit_equal = 0, near = 0, from_a = 0;
  for (size_t i = 0; i < fresh.size(); ++i) {
    ASSERT_EQ(after[i]["id"], fresh[i]["id"]);
    bit_equal += after[i]["embedding"] == fresh[i]["embedding"];
    near += max_diff(after[i]["embedding"], fresh[i]["embedding"]) < 1e-5;
    from_a += max_diff(after[i]["embedding"], before[i]["embedding"]) < 1e-2;
  }
  EXPECT_EQ(near, 600u);
  EXPECT_EQ(from_a, 0u) << "no vector of model A is left";
  EXPECT_GE(bit_equal, 500u);
  EXPECT_EQ(b.post("/collections/big/search", json{{"query", "topic"}}).status, 200);
}

TEST(ModelRule, ReembedStopsWhenTheCollectionIsDeleted) {
  ScratchDir dir;
  const std::string data = dir.path() + "/data";
  const std::string model_b = other_model(dir.path());
  {
    ServerProcess a(data);
    ASSERT_TRUE(a.start()) << a.start_error();
    create(a, "gone");
    add_docs(a, "gone", 0, 400);
    ASSERT_EQ(a.stop(), 0);
  }
  ServerProcess b(data, {"--model", model_b, "--debug-batch-delay-ms", "30"});
  ASSERT_TRUE(b.start()) << b.start_error();
  HttpResult started = b.post("/collections/gone/reembed", "");
  ASSERT_EQ(started.status, 202) << started.body;
  const uint64_t job = started.json_body()["job"];
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_EQ(b.del("/collections/gone").status, 200);
  create(b, "gone");  // re-created under the same name: another instance
  json state;
  const auto end = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < end) {
    const json jobs = get_json(b, "/jobs");
    for (const auto& j : jobs["jobs"])
      if (j["id"] == job) state = j;
    if (state.is_object() && state["state"] != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(state.is_object()) << "job " << job << " not in GET /jobs";
  EXPECT_EQ(state["state"], "failed") << state.dump();
  EXPECT_NE(state["error"].get<std::string>().find("deleted"), std::string::npos) << state.dump();
  EXPECT_EQ(b.post("/collections/gone/count", json::object()).json_body()["count"], 0);
  json c = get_json(b, "/collections/gone");
  EXPECT_EQ(c["model_matches"], true);
  EXPECT_FALSE(c.contains("reembed")) << "the new instance has no job";
}

// An import is bound to the collection instance it started on: deleted and re-created while
// the body streams, the rest lands nowhere and the answer says why.
TEST(WriteBinding, ImportStopsWhenItsCollectionIsReplaced) {
  ScratchDir dir;
  ServerProcess s(dir.path() + "/data");
  ASSERT_TRUE(s.start()) << s.start_error();
  create(s, "imp");
  std::string first, second;
  for (int i = 0; i < 300; ++i)
    first += json({{"id", "a" + std::to_string(i)}, {"text", "first part " + std::to_string(i)}}).dump() + "\n";
  for (int i = 0; i < 300; ++i)
    second += json({{"id", "b" + std::to_string(i)}, {"text", "second part " + std::to_string(i)}}).dump() + "\n";
  int fd = connect_loopback(s.port());
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(send_all(fd, "POST /collections/imp/import HTTP/1.1\r\nHost: x\r\n"
                           "Content-Type: application/x-ndjson\r\nContent-Length: " +
                               std::to_string(first.size() + second.size()) + "\r\n\r\n" + first));
  // The first chunk of 256 documents is written while the rest of the body has not come.
  int64_t count = 0;
  const auto end = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < end && count < 256) {
    count = s.post("/collections/imp/count", json::object()).json_body().value("count", 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(count, 256);
  ASSERT_EQ(s.del("/collections/imp").status, 200);
  create(s, "imp");
  ASSERT_TRUE(send_all(fd, second));
  HttpResult r = read_response(fd);
  ::close(fd);
  EXPECT_EQ(r.status, 409) << r.body;
  json j = r.json_body();
  EXPECT_EQ(j["error"]["code"], "conflict") << r.body;
  EXPECT_NE(j["error"]["message"].get<std::string>().find("deleted"), std::string::npos) << r.body;
  EXPECT_EQ(j["import"]["upserted"], 256) << r.body;
  // Nothing of the import is in the new collection.
  EXPECT_EQ(s.post("/collections/imp/count", json::object()).json_body()["count"], 0);
}

}  // namespace
}  // namespace qsearch::testing
