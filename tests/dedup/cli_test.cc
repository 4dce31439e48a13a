// `qsearch dedup` end to end on the small random test model: the clusters and keep-list
// against the library's own embeddings, the embedding cache reused by a rerun (nothing is
// embedded), --keep longest, usage errors, and Ctrl-C leaving no partial output.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "dedup_test_util.h"
#include "embed/embedder.h"

namespace qsearch {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Starts QSEARCH_BINARY with args; stdout and stderr go to files in dir.
pid_t spawn(const std::vector<std::string>& args, const std::string& dir) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int out = ::open((dir + "/stdout").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open((dir + "/stderr").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(out, 1);
    ::dup2(err, 2);
    std::vector<char*> argv;
    std::string bin = QSEARCH_BINARY;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

RunResult run(const std::vector<std::string>& args, const std::string& dir) {
  RunResult r;
  r.exit_code = wait_exit(spawn(args, dir));
  r.out = read_file(dir + "/stdout");
  r.err = read_file(dir + "/stderr");
  return r;
}

class DedupCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new std::string(
        (fs::temp_directory_path() / ("qsearch-dedup-cli-" + std::to_string(::getpid()))).string());
    fs::create_directories(*root_);
    const std::string tokenizer = std::string(QSEARCH_DEPS_DIR) + "/qwen3/tokenizer.json";
    if (!fs::exists(tokenizer)) {
      *setup_error_ = "no " + tokenizer + " (run `make deps`)";
      return;
    }
    RunResult r = run({"make-test-model", "--tokenizer", tokenizer, "--out", model()}, *root_);
    if (r.exit_code != 0) *setup_error_ = "make-test-model failed: " + r.err;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*root_);
    delete root_;
  }
  void SetUp() override {
    ASSERT_TRUE(setup_error_->empty()) << *setup_error_;
    dir_ = *root_ + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::create_directories(dir_);
  }
  static std::string model() { return *root_ + "/model"; }

  // Bases of random words; after each base, variants that end differently (cosine > 0.97 on
  // the test model), an exact copy, and documents with numeric ids or none.
  struct Doc {
    json id;  // null: none (the line number is the id)
    std::string text;
  };
  static std::vector<Doc> make_docs(int bases, uint64_t seed) {
    static const char* words[] = {"the",   "quick", "brown", "fox",   "jumps", "over",  "lazy",
                                  "dog",   "alpha", "beta",  "gamma", "delta", "river", "stone",
                                  "music", "north", "paper", "light", "seven", "green"};
    std::mt19937_64 rng(seed);
    std::vector<Doc> docs;
    for (int b = 0; b < bases; ++b) {
      std::string t;
      const int len = 20 + static_cast<int>(rng() % 20);
      for (int w = 0; w < len; ++w) {
        if (w > 0) t.push_back(' ');
        t.append(words[rng() % 20]);
      }
      const std::string num = std::to_string(b);
      docs.push_back({json(std::string("b").append(num)), t});
      if (b % 3 == 0) docs.push_back({json(std::string("s").append(num)), t + " fox"});
      if (b % 4 == 0) docs.push_back({json(100000 + b), t});  // exact copy, integer id
      if (b % 5 == 0) docs.push_back({json(), t + "."});      // no id
    }
    return docs;
  }
  static void write_jsonl(const std::string& path, const std::vector<Doc>& docs) {
    std::ofstream f(path);
    for (const Doc& d : docs) {
      json line = {{"text", d.text}};
      if (!d.id.is_null()) line["id"] = d.id;
      f << line.dump() << "\n";
    }
  }
  // The id as clusters.jsonl writes it (line numbers are 1-based).
  static json id_of(const std::vector<Doc>& docs, size_t k) {
    return docs[k].id.is_null() ? json(static_cast<int64_t>(k + 1)) : docs[k].id;
  }
  static std::string id_text(const json& id) {
    return id.is_string() ? id.get<std::string>() : id.dump();
  }

  static std::string* root_;
  static std::string* setup_error_;
  std::string dir_;
};
std::string* DedupCli::root_ = nullptr;
std::string* DedupCli::setup_error_ = new std::string();

TEST_F(DedupCli, ClustersKeepListAndCache) {
  const auto docs = make_docs(120, 1);
  const std::string input = dir_ + "/in.jsonl", out = dir_ + "/clusters.jsonl",
                    cache = dir_ + "/cache";
  write_jsonl(input, docs);
  const double t = 0.97;
  RunResult r = run({"dedup", "--model", model(), "--input", input, "--output", out, "--threshold",
                     "0.97", "--device", "cpu", "--cache-dir", cache, "--pairs-per-cluster", "-1"},
                    dir_);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("embed: model"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("saved embeddings to cache"), std::string::npos) << r.err;
  ASSERT_EQ(std::distance(fs::directory_iterator(cache), fs::directory_iterator{}), 1);

  // Expected pairs from the library's embeddings of the same texts; the CLI embeds in other
  // batches, so pairs within 1e-4 of the threshold may go either way.
  EmbedderOptions eo;
  eo.model_dir = model();
  eo.device = "cpu";
  auto embedder = Embedder::open(eo);
  ASSERT_TRUE(embedder.is_ok()) << embedder.status().to_string();
  std::vector<std::string> texts;
  for (const Doc& d : docs) texts.push_back(d.text);
  std::vector<std::vector<float>> vecs;
  ASSERT_TRUE((*embedder)->embed_texts(texts, "", 0, 0, &vecs).is_ok());
  const int dim = static_cast<int>(vecs[0].size());
  std::map<std::pair<std::string, std::string>, double> sure, maybe;
  for (size_t i = 0; i < docs.size(); ++i)
    for (size_t j = i + 1; j < docs.size(); ++j) {
      const double s = dedup_test::reference_cosine(vecs[i].data(), vecs[j].data(), dim);
      auto key = std::make_pair(id_of(docs, i).dump(), id_of(docs, j).dump());
      if (s >= t + 1e-4) sure[key] = s;
      if (s >= t - 1e-4) maybe[key] = s;
    }
  ASSERT_GE(sure.size(), 40u) << "the test data should have duplicates";

  // clusters.jsonl: the pairs, the members, the keeper (first seen).
  std::ifstream f(out);
  std::string line;
  std::map<std::string, size_t> index;  // id -> input position
  for (size_t k = 0; k < docs.size(); ++k) index[id_of(docs, k).dump()] = k;
  std::set<std::pair<std::string, std::string>> found;
  std::set<std::string> dropped;
  int clusters = 0;
  while (std::getline(f, line)) {
    json c = json::parse(line);
    ASSERT_EQ(c["cluster"].get<int>(), clusters++);
    const auto& members = c["members"];
    ASSERT_EQ(c["size"].get<size_t>(), members.size());
    ASSERT_GE(members.size(), 2u);
    for (size_t m = 1; m < members.size(); ++m)
      EXPECT_LT(index.at(members[m - 1].dump()), index.at(members[m].dump()));
    EXPECT_EQ(c["keep"], members[0]);  // --keep first
    for (size_t m = 1; m < members.size(); ++m) dropped.insert(members[m].dump());
    EXPECT_EQ(c["pairs_total"].get<size_t>(), c["pairs"].size());
    for (const auto& p : c["pairs"]) {
      auto key = std::make_pair(p[0].dump(), p[1].dump());
      EXPECT_LT(index.at(key.first), index.at(key.second));
      found.insert(key);
      EXPECT_GE(p[2].get<double>(), t);
      if (maybe.count(key)) {
        EXPECT_NEAR(p[2].get<double>(), maybe[key], 1e-3);
      }
    }
  }
  for (const auto& [key, s] : sure) EXPECT_TRUE(found.count(key)) << key.first << " " << key.second;
  for (const auto& key : found) EXPECT_TRUE(maybe.count(key)) << key.first << " " << key.second;

  // The keep-list: every document except the dropped ones, in input order, ids as text.
  std::vector<std::string> want_keep;
  for (size_t k = 0; k < docs.size(); ++k)
    if (!dropped.count(id_of(docs, k).dump())) want_keep.push_back(id_text(id_of(docs, k)));
  std::vector<std::string> keep;
  std::ifstream kf(dir_ + "/clusters.keep.txt");
  while (std::getline(kf, line)) keep.push_back(line);
  EXPECT_EQ(keep, want_keep);

  // Rerun with another threshold: embeddings from the cache, the model never opened.
  const std::string out2 = dir_ + "/clusters2.jsonl";
  RunResult r2 = run({"dedup", "--model", model(), "--input", input, "--output", out2,
                      "--threshold", "0.99", "--device", "cpu", "--cache-dir", cache, "--keep",
                      "longest", "--keep-list", dir_ + "/keep2.txt"},
                     dir_);
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  EXPECT_NE(r2.err.find("from cache"), std::string::npos) << r2.err;
  EXPECT_NE(r2.err.find("(nothing embedded)"), std::string::npos) << r2.err;
  EXPECT_EQ(r2.err.find("embed: model"), std::string::npos) << r2.err;
  std::ifstream f2(out2);
  int clusters2 = 0;
  while (std::getline(f2, line)) {
    json c = json::parse(line);
    ++clusters2;
    // --keep longest: no member's text is longer than the keeper's (ties: the first seen).
    size_t keep_len = docs[index.at(c["keep"].dump())].text.size();
    for (const auto& m : c["members"]) {
      const size_t len = docs[index.at(m.dump())].text.size();
      EXPECT_LE(len, keep_len);
      if (len == keep_len) {
        EXPECT_GE(index.at(m.dump()), index.at(c["keep"].dump()));
      }
    }
    for (const auto& p : c["pairs"]) EXPECT_GE(p[2].get<double>(), 0.99);
  }
  EXPECT_GT(clusters2, 0);
  EXPECT_TRUE(fs::exists(dir_ + "/keep2.txt"));
  EXPECT_FALSE(fs::exists(dir_ + "/clusters2.keep.txt"));
}

TEST_F(DedupCli, UsageAndInputErrors) {
  const std::string input = dir_ + "/in.jsonl";
  std::ofstream(input) << "{\"text\": \"a\"}\n{\"text\": \n";
  auto r = run({"dedup", "--input", input, "--output", dir_ + "/o.jsonl"}, dir_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--model DIR is required"), std::string::npos) << r.err;
  r = run({"dedup", "--model", model(), "--input", input, "--output", dir_ + "/o.jsonl",
           "--threshold", "1.5"},
          dir_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--threshold"), std::string::npos);
  r = run({"dedup", "--model", model(), "--input", input, "--output", dir_ + "/o.jsonl", "--keep",
           "newest"},
          dir_);
  EXPECT_EQ(r.exit_code, 2);
  r = run({"dedup", "--model", model(), "--input", input, "--output", dir_ + "/o.jsonl", "--bogus"},
          dir_);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown option --bogus"), std::string::npos);
  r = run(
      {"dedup", "--model", model(), "--input", input, "--output", dir_ + "/o.jsonl", "--no-cache"},
      dir_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("in.jsonl:2: not valid JSON"), std::string::npos) << r.err;
  r = run({"dedup", "--model", model(), "--input", dir_ + "/missing.jsonl", "--output",
           dir_ + "/o.jsonl"},
          dir_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ + "/o.jsonl"));
  EXPECT_FALSE(fs::exists(dir_ + "/o.keep.txt"));
  r = run({"dedup", "--model", model(), "--input", input, "--output", dir_ + "/o.jsonl", "--device",
           "tpu"},
          dir_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("unknown device 'tpu'"), std::string::npos) << r.err;
  r = run({"dedup", "--help"}, dir_);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--keep first|longest"), std::string::npos);
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST_F(DedupCli, InterruptLeavesNoPartialOutput) {
  // Enough text that embedding takes many seconds; interrupted at the first progress line.
  auto docs = make_docs(6000, 7);
  const std::string input = dir_ + "/big.jsonl", out = dir_ + "/out.jsonl", cache = dir_ + "/cache";
  write_jsonl(input, docs);
  const pid_t pid = spawn({"dedup", "--model", model(), "--input", input, "--output", out,
                           "--device", "cpu", "--threads", "1", "--cache-dir", cache},
                          dir_);
  const auto start = std::chrono::steady_clock::now();
  bool seen = false;
  while (!seen && std::chrono::steady_clock::now() - start < std::chrono::seconds(120)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    seen = read_file(dir_ + "/stderr").find("embed: ") != std::string::npos &&
           read_file(dir_ + "/stderr").find(" docs (") != std::string::npos;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      FAIL() << "finished before the interrupt: " << read_file(dir_ + "/stderr");
  }
  ASSERT_TRUE(seen) << read_file(dir_ + "/stderr");
  ::kill(pid, SIGINT);
  const int code = wait_exit(pid);
  const std::string err = read_file(dir_ + "/stderr");
  EXPECT_EQ(code, 130) << err;
  EXPECT_NE(err.find("interrupted; no output written"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(dir_ + "/out.keep.txt"));
  if (fs::exists(cache)) {
    EXPECT_TRUE(fs::is_empty(cache)) << "no cache file, not even a temp";
  }
  for (const auto& e : fs::directory_iterator(dir_))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

}  // namespace
}  // namespace qsearch
