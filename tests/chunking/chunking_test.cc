// Collection option "chunking" end to end (server subprocess, test model, CPU engine): long
// documents split into token windows, each chunk's vector is the model's embedding of the chunk
// text its offsets name, search returns each document once with its best chunk, updates and
// deletes take all chunks, and all of it survives a restart and a kill -9.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>

#include "api/server_util.h"

namespace qsearch::testing {
namespace {

// The code points [start, end) of UTF-8 text, by a decoder of this test's own.
std::string slice(const std::string& text, int start, int end) {
  std::vector<size_t> char_starts;
  for (size_t b = 0; b < text.size(); ++b)
    if ((static_cast<unsigned char>(text[b]) & 0xC0) != 0x80) char_starts.push_back(b);
  char_starts.push_back(text.size());
  EXPECT_LE(end, static_cast<int>(char_starts.size()) - 1);
  return text.substr(char_starts[start], char_starts[end] - char_starts[start]);
}

float dot(const json& a, const json& b) {
  float s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i].get<float>() * b[i].get<float>();
  return s;
}

std::string english(int sentences, unsigned seed) {
  static const char* words[] = {"river", "mountain", "capital", "library", "engine", "search",
                                "vector", "cloud", "harbour", "garden", "signal", "winter"};
  std::mt19937 rng(seed);
  std::string s;
  for (int i = 0; i < sentences; ++i) {
    const int len = 6 + static_cast<int>(rng() % 14);
    for (int w = 0; w < len; ++w) {
      s += w == 0 ? "The" : words[rng() % 12];
      s += w + 1 < len ? " " : ". ";
    }
    if (i % 9 == 8) s += "\n";
  }
  return s;
}

std::string multilingual(size_t bytes, unsigned seed) {
  const std::vector<std::string> pieces = {
      "北京是中国的首都，也是最大的城市之一。", "𠀀𠀁𪚥𠮷野家", "👩🏽‍💻👨‍👩‍👧‍👦🏳️‍🌈",
      "मनुष्य स्वतंत्र पैदा होता है। ", "هل تتحدث العربية؟ نعم. ", "Привет, мир! ",
      "e\xcc\x81\xcc\x82 o\xcc\x88 ", "한국어 문장입니다. ", "\n"};
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < bytes) s += pieces[rng() % pieces.size()];
  return s;
}

class Chunking : public SharedServerTest {
 protected:
  // The embedding of a text as a document (no instruction) at the collection's dimension.
  static json embed(const std::string& text, int dim) {
    HttpResult r = s().post("/v1/embeddings", json{{"input", text}, {"dimensions", dim}});
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json_body()["data"][0]["embedding"];
  }
};

TEST_F(Chunking, OptionsValidatedAtCreate) {
  auto create = [](const std::string& name, json options) {
    json body = {{"name", name}, {"chunking", options}};
    return s().post("/collections", body);
  };
  EXPECT_EQ(create("bad1", {{"max_tokens", 8}}).status, 422);
  EXPECT_EQ(create("bad2", {{"max_tokens", 64}, {"overlap", 40}}).status, 422);
  EXPECT_EQ(create("bad3", {{"max_tokens", "64"}}).status, 422);
  EXPECT_EQ(create("bad4", {{"window", 64}}).status, 422);
  EXPECT_EQ(create("bad5", json::array()).status, 422);
  HttpResult over = create("bad6", {{"max_tokens", 20000}});  // above --max-tokens-per-text
  EXPECT_EQ(over.status, 422);
  EXPECT_NE(over.body.find("max-tokens-per-text"), std::string::npos) << over.body;
  HttpResult both = s().post("/collections", json{{"name", "bad7"},
                                                  {"chunking", {{"max_tokens", 64}}},
                                                  {"dedup", {{"threshold", 0.9}}}});
  EXPECT_EQ(both.status, 422) << both.body;
  for (int i = 1; i <= 7; ++i) EXPECT_EQ(s().get("/collections/bad" + std::to_string(i)).status, 404);
  HttpResult ok = create("good", {{"max_tokens", 128}});
  ASSERT_EQ(ok.status, 201) << ok.body;
  EXPECT_EQ(ok.json_body()["options"]["chunking"]["max_tokens"], 128);
}

// A 50k+-token document: chunk count, offsets and vectors checked against the model.
TEST_F(Chunking, LongDocumentChunksAreExactEmbeddingsOfTheirText) {
  ASSERT_EQ(s().post("/collections", json{{"name", "long"}, {"chunking", {{"max_tokens", 512}, {"overlap", 64}}}}).status, 201);
  const int dim = s().get("/collections/long").json_body()["dimension"].get<int>();
  const std::string text = english(3900, 1) + multilingual(20000, 2);
  // About 115 chunks for the CPU engine: a generous timeout for a loaded CI machine.
  HttpResult r = s().post("/collections/long/documents",
                          json{{"documents", {{{"id", "book"}, {"text", text}}}}}.dump(), "", 900);
  ASSERT_EQ(r.status, 200) << r.body;
  const json put = r.json_body()["results"][0];
  EXPECT_EQ(put["truncated"], false);
  EXPECT_EQ(put["tokens_cut"], 0);
  const int chunks = put["chunks"].get<int>();
  EXPECT_GT(put["tokens"].get<int>(), 50000);
  EXPECT_GT(chunks, 50000 / 448);

  HttpResult g = s().get("/collections/long/documents/book?include=embedding");
  ASSERT_EQ(g.status, 200);
  const json doc = g.json_body();
  EXPECT_EQ(doc["text"], text);
  EXPECT_FALSE(doc.contains("embedding"));
  ASSERT_EQ(doc["chunks"].size(), static_cast<size_t>(chunks));
  EXPECT_EQ(s().get("/collections/long").json_body()["index_size"], chunks);
  int previous_end = 0, tokens = 0;
  for (int i = 0; i < chunks; ++i) {
    const json& c = doc["chunks"][i];
    EXPECT_EQ(c["index"], i);
    const int start = c["start"].get<int>(), end = c["end"].get<int>();
    EXPECT_LE(start, previous_end) << "gap before chunk " << i;
    EXPECT_LT(start, end);
    if (i == 0) {
      EXPECT_EQ(start, 0);
    }
    previous_end = end;
    tokens += c["tokens"].get<int>();
    EXPECT_LE(c["tokens"].get<int>(), 512 + 2) << "chunk " << i;
    if (i % 9 == 0 || i == chunks - 1) {  // the model's embedding of exactly that text
      const std::string piece = slice(text, start, end);
      json v = embed(piece, dim);
      EXPECT_GT(dot(v, c["embedding"]), 0.99999f) << "chunk " << i;
    }
  }
  EXPECT_EQ(tokens, put["tokens"].get<int>());
  // Searching with a chunk's vector finds the document, that chunk, score 1, offsets and text.
  const int probe = chunks / 2;
  const json& pc = doc["chunks"][probe];
  HttpResult sr = s().post("/collections/long/search", json{{"vector", pc["embedding"]}, {"k", 5}});
  ASSERT_EQ(sr.status, 200) << sr.body;
  const json results = sr.json_body()["results"];
  ASSERT_EQ(results.size(), 1u);  // one document, once
  EXPECT_EQ(results[0]["id"], "book");
  EXPECT_NEAR(results[0]["score"].get<float>(), 1.0f, 1e-4);
  EXPECT_EQ(results[0]["chunk"]["index"], probe);
  EXPECT_EQ(results[0]["chunk"]["start"], pc["start"]);
  EXPECT_EQ(results[0]["chunk"]["end"], pc["end"]);
  EXPECT_EQ(results[0]["chunk"]["text"], slice(text, pc["start"], pc["end"]));
}

TEST_F(Chunking, SearchUpdateDeleteAndRestart) {
  ServerProcess& server = s();
  ASSERT_EQ(server.post("/collections", json{{"name", "kb"}, {"chunking", {{"max_tokens", 48}, {"overlap", 8}}}}).status, 201);
  const int dim = server.get("/collections/kb").json_body()["dimension"].get<int>();
  json batch = json::array();
  for (int d = 0; d < 6; ++d)
    batch.push_back({{"id", "doc" + std::to_string(d)}, {"text", english(30 + 10 * d, 100 + d)},
                     {"metadata", {{"n", d}}}});
  batch.push_back({{"id", "multi"}, {"text", multilingual(3000, 9)}});
  batch.push_back({{"id", "tiny"}, {"text", "One short sentence."}});
  HttpResult w = server.post("/collections/kb/documents", json{{"documents", batch}});
  ASSERT_EQ(w.status, 200) << w.body;
  int total = 0;
  const json written = w.json_body();
  for (const auto& r : written["results"]) {
    EXPECT_GE(r["chunks"].get<int>(), 1) << r.dump();
    total += r["chunks"].get<int>();
  }
  EXPECT_EQ(written["results"][7]["chunks"], 1);  // "tiny"
  EXPECT_EQ(server.get("/collections/kb").json_body()["index_size"], total);
  EXPECT_EQ(server.get("/collections/kb").json_body()["document_count"], 8);

  // Query text: each document at most once, k distinct documents, with chunk offsets.
  HttpResult q = server.post("/collections/kb/search", json{{"query", "river mountain library"}, {"k", 5}});
  ASSERT_EQ(q.status, 200) << q.body;
  std::set<std::string> ids;
  const json found = q.json_body();
  for (const auto& h : found["results"]) {
    ids.insert(h["id"].get<std::string>());
    ASSERT_TRUE(h.contains("chunk")) << h.dump();
    EXPECT_EQ(h["chunk"]["text"], slice(h["text"], h["chunk"]["start"], h["chunk"]["end"]));
  }
  EXPECT_EQ(ids.size(), 5u);
  // Search by id (the mean of its chunks) leaves the document itself out.
  HttpResult byid = server.post("/collections/kb/search", json{{"id", "doc3"}, {"k", 8}});
  ASSERT_EQ(byid.status, 200) << byid.body;
  EXPECT_EQ(byid.json_body()["results"].size(), 7u);
  const json similar = byid.json_body();
  for (const auto& h : similar["results"]) EXPECT_NE(h["id"], "doc3");

  // Update doc5 to a short text: all its old chunks leave the index in the same write.
  json old5 = server.get("/collections/kb/documents/doc5?include=embedding").json_body();
  const int old_chunks = static_cast<int>(old5["chunks"].size());
  ASSERT_GT(old_chunks, 2);
  HttpResult u = server.put("/collections/kb/documents/doc5", json{{"text", "Now a single sentence."}});
  ASSERT_EQ(u.status, 200) << u.body;
  EXPECT_EQ(u.json_body()["chunks"], 1);
  total += 1 - old_chunks;
  EXPECT_EQ(server.get("/collections/kb").json_body()["index_size"], total);
  for (const auto& c : old5["chunks"]) {
    HttpResult h = server.post("/collections/kb/search", json{{"vector", c["embedding"]}, {"k", 1}});
    ASSERT_EQ(h.status, 200);
    const json top = h.json_body()["results"][0];
    EXPECT_FALSE(top["id"] == "doc5" && top["score"].get<float>() > 0.9999f) << "an old chunk of doc5 is still indexed";
  }
  // Delete: every chunk goes.
  const int multi_chunks = static_cast<int>(server.get("/collections/kb/documents/multi").json_body()["chunks"].size());
  ASSERT_EQ(server.del("/collections/kb/documents/multi").status, 200);
  total -= multi_chunks;
  EXPECT_EQ(server.get("/collections/kb").json_body()["index_size"], total);

  // Restart (clean), then kill -9 after more writes: the chunks come back from the store.
  json before = server.post("/collections/kb/search", json{{"query", "winter signal"}, {"k", 7}}).json_body()["results"];
  ASSERT_EQ(server.stop(), 0);
  ASSERT_TRUE(server.start()) << server.log();
  json after = server.post("/collections/kb/search", json{{"query", "winter signal"}, {"k", 7}}).json_body()["results"];
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i]["id"], before[i]["id"]);
    EXPECT_EQ(after[i]["chunk"], before[i]["chunk"]);
  }
  HttpResult late = server.put("/collections/kb/documents/late", json{{"text", english(40, 77)}});
  ASSERT_EQ(late.status, 200) << late.body;
  total += late.json_body()["chunks"].get<int>();
  server.kill9();
  ASSERT_TRUE(server.start()) << server.log();
  EXPECT_EQ(server.get("/collections/kb").json_body()["index_size"], total);
  EXPECT_EQ(server.get("/collections/kb").json_body()["document_count"], 8);
  json late_doc = server.get("/collections/kb/documents/late?include=embedding").json_body();
  ASSERT_TRUE(late_doc.contains("chunks"));
  const json& last = late_doc["chunks"].back();
  HttpResult f = server.post("/collections/kb/search", json{{"vector", last["embedding"]}, {"k", 1}});
  ASSERT_EQ(f.status, 200);
  EXPECT_EQ(f.json_body()["results"][0]["id"], "late");
  EXPECT_EQ(f.json_body()["results"][0]["chunk"]["index"], late_doc["chunks"].size() - 1);
  json v = embed(slice(late_doc["text"], last["start"], last["end"]), dim);
  EXPECT_GT(dot(v, last["embedding"]), 0.99999f);
}

TEST_F(Chunking, NdjsonImportCountsChunks) {
  ASSERT_EQ(s().post("/collections", json{{"name", "imp"}, {"chunking", {{"max_tokens", 32}, {"overlap", 4}}}}).status, 201);
  std::string body;
  for (int d = 0; d < 5; ++d)
    body += json{{"id", "i" + std::to_string(d)}, {"text", english(12, 200 + d)}}.dump() + "\n";
  HttpResult r = s().post("/collections/imp/import", body);
  ASSERT_EQ(r.status, 200) << r.body;
  const json summary = r.json_body();
  EXPECT_EQ(summary["upserted"], 5);
  EXPECT_GT(summary["chunks"].get<int>(), 5);
  EXPECT_EQ(s().get("/collections/imp").json_body()["index_size"], summary["chunks"]);
}

}  // namespace
}  // namespace qsearch::testing
