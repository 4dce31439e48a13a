// The JSONL reader and the embedding cache of the dedup job.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "dedup/corpus.h"
#include "dedup/embedding_cache.h"

namespace qsearch {
namespace {
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("qsearch-dedup-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& content) const {
    std::ofstream(file(name), std::ios::binary) << content;
    return file(name);
  }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

TEST(Corpus, IdsTextsAndLineNumbers) {
  TempDir dir;
  const std::string path = dir.write("in.jsonl",
                                     "{\"id\": \"a\", \"text\": \"hello\"}\n"
                                     "\n"
                                     "{\"text\": \"caf\\u00e9 \\u4e16\\u754c\", \"id\": 17}\n"
                                     "  \n"
                                     "{\"body\": \"x\", \"text\": \"no id here\"}\r\n"
                                     "{\"id\": null, \"text\": \"null id\"}");
  auto c = scan_jsonl_corpus(path, "text", "id");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  ASSERT_EQ(c->size(), 4);
  EXPECT_EQ(c->ids, (std::vector<std::string>{"\"a\"", "17", "5", "6"}));
  EXPECT_EQ(c->id_text(0), "a");
  EXPECT_EQ(c->id_text(1), "17");
  EXPECT_EQ(c->text_chars, (std::vector<int64_t>{5, 7, 10, 7}));  // code points, not bytes
  std::vector<std::string> texts;
  ASSERT_TRUE(read_corpus_texts(*c, 1, 4, &texts).is_ok());
  EXPECT_EQ(texts, (std::vector<std::string>{"caf\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c", "no id here",
                                             "null id"}));
  ASSERT_TRUE(read_corpus_texts(*c, 0, 1, &texts).is_ok());
  EXPECT_EQ(texts, (std::vector<std::string>{"hello"}));
}

TEST(Corpus, OtherFields) {
  TempDir dir;
  const std::string path = dir.write(
      "in.jsonl", "{\"key\": \"k1\", \"body\": \"one\"}\n{\"key\": \"k2\", \"body\": \"two\"}\n");
  auto c = scan_jsonl_corpus(path, "body", "key");
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(c->id_text(1), "k2");
  std::vector<std::string> texts;
  ASSERT_TRUE(read_corpus_texts(*c, 0, 2, &texts).is_ok());
  EXPECT_EQ(texts[1], "two");
}

TEST(Corpus, ErrorsNameTheLine) {
  TempDir dir;
  struct Case {
    std::string content;
    std::string needle;
  } cases[] = {
      {"{\"text\": \"a\"}\n{not json\n", ":2: not valid JSON"},
      {"[1, 2]\n", ":1: not a JSON object"},
      {"{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", ":2: no string field 'text'"},
      {"{\"text\": 5}\n", ":1: no string field 'text'"},
      {"{\"id\": 1.5, \"text\": \"a\"}\n", "neither a string nor an integer"},
      {"{\"id\": \"a\\nb\", \"text\": \"a\"}\n", "line break"},
      {"{\"id\": \"x\", \"text\": \"a\"}\n{\"id\": \"x\", \"text\": \"b\"}\n",
       ":2: id \"x\" already used on line 1"},
      {"{\"id\": 2, \"text\": \"a\"}\n{\"text\": \"b\"}\n", "already used"},  // line number 2
  };
  for (const Case& c : cases) {
    const std::string path = dir.write("bad.jsonl", c.content);
    auto r = scan_jsonl_corpus(path, "text", "id");
    ASSERT_FALSE(r.is_ok()) << c.content;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.needle), std::string::npos)
        << r.status().message() << " should contain " << c.needle;
  }
  EXPECT_EQ(scan_jsonl_corpus(dir.file("missing.jsonl"), "text", "id").status().code(),
            StatusCode::kNotFound);
}

TEST(EmbeddingCache, KeyNamesEveryInput) {
  TempDir dir;
  fs::create_directories(dir.path() / "model");
  dir.write("model/config.json", "{}");
  const std::string input = dir.write("in.jsonl", "{\"text\": \"a\"}\n");
  EmbeddingCacheKeyInputs base{dir.file("model"), input, "text", "id", 64, "", 0};
  auto k0 = embedding_cache_key(base);
  ASSERT_TRUE(k0.is_ok()) << k0.status().to_string();
  EXPECT_EQ(*embedding_cache_key(base), *k0);  // deterministic
  auto differs = [&](EmbeddingCacheKeyInputs in) {
    auto k = embedding_cache_key(in);
    return k.is_ok() && *k != *k0;
  };
  auto v = base;
  v.text_field = "body";
  EXPECT_TRUE(differs(v));
  v = base;
  v.id_field = "key";
  EXPECT_TRUE(differs(v));
  v = base;
  v.dim = 128;
  EXPECT_TRUE(differs(v));
  v = base;
  v.instruction = "Find duplicates";
  EXPECT_TRUE(differs(v));
  v = base;
  v.max_tokens = 512;
  EXPECT_TRUE(differs(v));
  // The input's size changes; and a model file is added.
  dir.write("in.jsonl", "{\"text\": \"ab\"}\n");
  EXPECT_TRUE(differs(base));
  auto k1 = embedding_cache_key(base);
  dir.write("model/model.safetensors", "xx");
  auto k2 = embedding_cache_key(base);
  ASSERT_TRUE(k1.is_ok() && k2.is_ok());
  EXPECT_NE(*k1, *k2);
  EXPECT_NE(embedding_cache_file(dir.file("c"), input, *k1),
            embedding_cache_file(dir.file("c"), input, *k2));
  v = base;
  v.model_dir = dir.file("nope");
  EXPECT_EQ(embedding_cache_key(v).status().code(), StatusCode::kNotFound);
}

TEST(EmbeddingCache, SaveLoadAndDamage) {
  TempDir dir;
  const std::string path = dir.file("sub/dir/in.jsonl.0123.qemb");
  const int64_t n = 1000;
  const int dim = 48;
  std::vector<float> data(n * dim);
  for (size_t k = 0; k < data.size(); ++k) data[k] = static_cast<float>(k % 977) * 0.001f - 0.3f;
  std::vector<float> loaded;
  EXPECT_EQ(load_embedding_cache(path, "key-1", n, dim, &loaded).code(), StatusCode::kNotFound);
  ASSERT_TRUE(save_embedding_cache(path, "key-1", n, dim, data.data()).is_ok());
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    EXPECT_EQ(e.path().string(), path) << "no temp file may remain";
  ASSERT_TRUE(load_embedding_cache(path, "key-1", n, dim, &loaded).is_ok());
  EXPECT_EQ(loaded, data);
  EXPECT_EQ(load_embedding_cache(path, "key-2", n, dim, &loaded).code(), StatusCode::kCorruption);
  EXPECT_EQ(load_embedding_cache(path, "key-1", n + 1, dim, &loaded).code(),
            StatusCode::kCorruption);
  // One flipped byte in the data is caught by the checksum.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-100, std::ios::end);
    char c;
    f.read(&c, 1);
    f.seekp(-100, std::ios::end);
    c ^= 0x10;
    f.write(&c, 1);
  }
  EXPECT_EQ(load_embedding_cache(path, "key-1", n, dim, &loaded).code(), StatusCode::kCorruption);
  // A truncated file.
  fs::resize_file(path, fs::file_size(path) - 4);
  EXPECT_EQ(load_embedding_cache(path, "key-1", n, dim, &loaded).code(), StatusCode::kCorruption);
}

TEST(EmbeddingCache, CancelledSaveLeavesNothing) {
  TempDir dir;
  const std::string path = dir.file("in.qemb");
  std::vector<float> data(4096, 1.0f);
  std::atomic<bool> cancel{true};
  EXPECT_EQ(save_embedding_cache(path, "k", 64, 64, data.data(), &cancel).code(),
            StatusCode::kCancelled);
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(EmbeddingCache, ChecksumSeesEveryWord) {
  std::vector<float> a(1001, 0.5f);
  const uint64_t h = embedding_checksum(a.data(), a.size());
  for (size_t k : {size_t{0}, size_t{7}, size_t{500}, size_t{1000}}) {
    auto b = a;
    b[k] = 0.25f;
    EXPECT_NE(embedding_checksum(b.data(), b.size()), h) << k;
  }
}

}  // namespace
}  // namespace qsearch
