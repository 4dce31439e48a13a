// The command-line contract of `qsearch rerank`: JSON lines {"query", "document",
// "instruction"?} in, one score per line out in the same order, equal to the in-process
// reranker; the cut reported on stderr; errors to stderr with a non-zero exit code and nothing
// on stdout.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "embed/reranker.h"
#include "model/test_util.h"

namespace qsearch {
namespace {

struct CliRun {
  int code;
  std::string out, err;
};

CliRun run_cli(const testing::TempDir& dir, const std::string& args, const std::string& input) {
  testing::write_file(dir.file("in.txt"), input);
  std::string cmd = std::string(QSEARCH_BINARY) + " " + args + " < " + dir.file("in.txt") + " > " +
                    dir.file("out.txt") + " 2> " + dir.file("err.txt");
  int status = std::system(cmd.c_str());
  CliRun r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = testing::read_file(dir.file("out.txt"));
  r.err = testing::read_file(dir.file("err.txt"));
  return r;
}

std::vector<double> numbers(const std::string& out) {
  std::vector<double> v;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) v.push_back(nlohmann::json::parse(line).get<double>());
  return v;
}

TEST(CliRerank, Contract) {
  if (!testing::have_qwen3_tokenizer()) return;
  testing::TempDir dir;
  TestModelOptions o;
  o.reranker = true;
  o.tied = false;
  testing::make_tiny_model(dir.file("model"), o);
  const std::string model = "rerank --device cpu --model " + dir.file("model");

  std::string long_doc;
  for (int i = 0; i < 400; ++i) long_doc += "w" + std::to_string(i) + " ";
  const std::vector<nlohmann::json> lines = {
      {{"query", "What is the capital of China?"}, {"document", "Beijing."}},
      {{"query", "量子计算"},
       {"document", "量子计算利用量子叠加。"},
       {"instruction", "判断相关性"}},
      {{"query", "q"}, {"document", long_doc}},
      {{"query", ""}, {"document", ""}, {"instruction", nullptr}},
  };
  std::string input;
  for (const auto& l : lines) input += l.dump() + "\n";
  CliRun r = run_cli(dir, model + " --max-tokens 256", input);
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<double> got = numbers(r.out);
  ASSERT_EQ(got.size(), lines.size());
  EXPECT_NE(r.err.find("line 3: truncated"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("LM head untied"), std::string::npos) << r.err;

  // The same scores in-process (instruction null: the default).
  EmbedderOptions eo;
  eo.model_dir = dir.file("model");
  eo.device = "cpu";
  auto rr = Reranker::open(eo);
  ASSERT_TRUE(rr.is_ok()) << rr.status().to_string();
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& l = lines[i];
    std::string instruction = l.contains("instruction") && l["instruction"].is_string()
                                  ? l["instruction"].get<std::string>()
                                  : std::string(kDefaultRerankInstruction);
    auto p = (*rr)->prepare(l["query"].get<std::string>(), l["document"].get<std::string>(),
                            instruction, 256);
    ASSERT_TRUE(p.is_ok());
    std::vector<float> s;
    ASSERT_TRUE((*rr)->score({*p}, &s).is_ok());
    EXPECT_NEAR(got[i], s[0], 1e-7) << "line " << i + 1;
    EXPECT_GT(got[i], 0.0);
    EXPECT_LT(got[i], 1.0);
  }
  // --instruction replaces the default for lines without one.
  CliRun custom = run_cli(dir, model + " --instruction 'Judge it'", lines[0].dump() + "\n");
  ASSERT_EQ(custom.code, 0) << custom.err;
  EXPECT_NE(numbers(custom.out)[0], got[0]);

  // Errors: nothing on stdout, a message naming the line.
  for (const auto& [bad, words] : std::vector<std::pair<std::string, std::string>>{
           {"{\"query\": \"q\"}\n", "line 1: \"document\""},
           {lines[0].dump() + "\n[1, 2]\n", "line 2: expected a JSON object"},
           {"{\"query\": 1, \"document\": \"d\"}\n", "\"query\" must be a string"},
           {"not json\n", "line 1: bad JSON"},
           {"{\"query\": \"q\", \"document\": \"\xff\"}\n", "invalid UTF-8"},
           {"{\"query\": \"q\", \"document\": \"d\", \"instruction\": 5}\n", "\"instruction\""},
       }) {
    CliRun e = run_cli(dir, model, bad);
    EXPECT_EQ(e.code, 1) << bad;
    EXPECT_TRUE(e.out.empty()) << bad;
    EXPECT_NE(e.err.find(words), std::string::npos) << bad << " -> " << e.err;
  }
  CliRun no_model = run_cli(dir, "rerank", "");
  EXPECT_NE(no_model.code, 0);
  CliRun tiny_limit = run_cli(dir, model + " --max-tokens 10", lines[0].dump() + "\n");
  EXPECT_EQ(tiny_limit.code, 1);
  EXPECT_NE(tiny_limit.err.find("cannot hold"), std::string::npos) << tiny_limit.err;
  CliRun missing = run_cli(dir, "rerank --device cpu --model " + dir.file("nope"), "");
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("Qwen3-Reranker"), std::string::npos) << missing.err;
  CliRun help = run_cli(dir, "rerank --help", "");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("softmax"), std::string::npos);
}

}  // namespace
}  // namespace qsearch
