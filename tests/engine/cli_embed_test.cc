// The command-line contract of `qsearch make-test-model` and `qsearch embed` (issue 2 section 6):
// JSON lines in, one L2-normalised JSON array per line out, same order; errors to stderr with a
// non-zero exit code.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "embed/embedder.h"
#include "engine/reference_util.h"
#include "model/test_util.h"

namespace qsearch {
namespace {

struct CliRun {
  int code;
  std::string out, err;
};

// Runs `qsearch ARGS < input`, capturing stdout and stderr through files.
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

std::vector<std::vector<float>> parse_lines(const std::string& out) {
  std::vector<std::vector<float>> rows;
  size_t pos = 0;
  while (pos < out.size()) {
    size_t nl = out.find('\n', pos);
    if (nl == std::string::npos) nl = out.size();
    rows.push_back(nlohmann::json::parse(out.substr(pos, nl - pos)).get<std::vector<float>>());
    pos = nl + 1;
  }
  return rows;
}

TEST(CliEmbed, Contract) {
  if (!testing::have_qwen3_tokenizer()) return;
  testing::TempDir dir;
  CliRun made = run_cli(dir,
                        "make-test-model --tokenizer " + testing::qwen3_tokenizer_path() +
                            " --out " + dir.file("model"),
                        "");
  ASSERT_EQ(made.code, 0) << made.err;
  auto info = nlohmann::json::parse(made.out);
  EXPECT_EQ(info["checksum"].get<std::string>().size(), 16u);
  EXPECT_EQ(info["parameters"], 20102912);

  const std::string model = " --model " + dir.file("model") + " --device cpu";
  std::vector<std::string> texts = {"first line", "", "第三行 ✓", "fourth\twith \"quotes\""};
  std::string input;
  for (const auto& t : texts) input += nlohmann::json(t).dump() + "\n";
  CliRun r = run_cli(dir, "embed" + model, input);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("device cpu"), std::string::npos) << r.err;
  auto rows = parse_lines(r.out);
  ASSERT_EQ(rows.size(), texts.size());

  // Same vectors as the library (printed with %.9g: float32 round-trips exactly).
  EmbedderOptions o;
  o.model_dir = dir.file("model");
  o.device = "cpu";
  auto e = Embedder::open(o);
  ASSERT_TRUE(e.is_ok());
  std::vector<std::vector<float>> want;
  ASSERT_TRUE((*e)->embed_texts(texts, "", 0, 0, &want).is_ok());
  for (size_t i = 0; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 128u);
    EXPECT_EQ(rows[i], want[i]) << i;
  }

  // Instruction, MRL dimension, truncation report.
  const std::string task = "Given a web search query, retrieve relevant passages";
  CliRun q = run_cli(dir, "embed" + model + " --dim 64 --instruction '" + task + "'",
                     "\"what is rope?\"\n");
  ASSERT_EQ(q.code, 0) << q.err;
  auto qrows = parse_lines(q.out);
  ASSERT_EQ(qrows.size(), 1u);
  ASSERT_EQ(qrows[0].size(), 64u);
  ASSERT_TRUE((*e)->embed_texts({"what is rope?"}, task, 64, 0, &want).is_ok());
  EXPECT_EQ(qrows[0], want[0]);
  CliRun t = run_cli(dir, "embed" + model + " --max-tokens 4", "\"one two three four five six\"\n");
  ASSERT_EQ(t.code, 0) << t.err;
  EXPECT_NE(t.err.find("line 1: truncated 3 of 7 tokens"), std::string::npos) << t.err;

  // --ids: used as given, EOS appended when missing.
  CliRun ids = run_cli(dir, "embed" + model + " --ids", "[9707, 1879]\n[9707, 1879, 151643]\n");
  ASSERT_EQ(ids.code, 0) << ids.err;
  auto id_rows = parse_lines(ids.out);
  ASSERT_EQ(id_rows.size(), 2u);
  EXPECT_EQ(id_rows[0], id_rows[1]);

  // Errors: non-zero exit, the line named, nothing half-written on stdout.
  CliRun bad = run_cli(dir, "embed" + model, "\"ok\"\n{not json\n");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("line 2"), std::string::npos) << bad.err;
  EXPECT_TRUE(bad.out.empty());
  CliRun utf = run_cli(dir, "embed" + model, "\"ok\"\n\"\xff\"\n");
  EXPECT_NE(utf.code, 0);
  EXPECT_NE(utf.err.find("line 2: invalid UTF-8"), std::string::npos) << utf.err;
  CliRun not_string = run_cli(dir, "embed" + model, "42\n");
  EXPECT_NE(not_string.code, 0);
  CliRun bad_dim = run_cli(dir, "embed" + model + " --dim 16", "\"x\"\n");
  EXPECT_NE(bad_dim.code, 0);
  CliRun bad_flag = run_cli(dir, "embed" + model + " --frobnicate", "");
  EXPECT_NE(bad_flag.code, 0);
  CliRun no_model = run_cli(dir, "embed --model " + dir.file("missing"), "\"x\"\n");
  EXPECT_NE(no_model.code, 0);
  EXPECT_NE(no_model.err.find("does not exist"), std::string::npos);
  CliRun help = run_cli(dir, "embed --help", "");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("--instruction"), std::string::npos);
  CliRun mhelp = run_cli(dir, "make-test-model --help", "");
  EXPECT_EQ(mhelp.code, 0);
  EXPECT_NE(mhelp.out.find("--shards"), std::string::npos);
}

// --dtype: bf16 or fp8; a bad value is a usage error (2); fp8 on the CPU engine is refused with
// the engine's message (1) before anything is written.
TEST(CliEmbed, DtypeOption) {
  if (!testing::have_qwen3_tokenizer()) return;
  testing::TempDir dir;
  testing::make_tiny_model(dir.file("model"));
  const std::string model = " --model " + dir.file("model") + " --device cpu";
  CliRun bad = run_cli(dir, "embed" + model + " --dtype fp16", "\"x\"\n");
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_NE(bad.err.find("bf16 or fp8"), std::string::npos) << bad.err;
  CliRun fp8 = run_cli(dir, "embed" + model + " --dtype fp8", "\"x\"\n");
  EXPECT_EQ(fp8.code, 1) << fp8.err;
  EXPECT_NE(fp8.err.find(kFp8NeedsGpuMessage), std::string::npos) << fp8.err;
  EXPECT_EQ(fp8.out, "");
  CliRun bf16 = run_cli(dir, "embed" + model + " --dtype bf16", "\"x\"\n");
  ASSERT_EQ(bf16.code, 0) << bf16.err;
  EXPECT_EQ(parse_lines(bf16.out).size(), 1u);
  CliRun help = run_cli(dir, "embed --help", "");
  EXPECT_NE(help.out.find("--dtype"), std::string::npos);
}

}  // namespace
}  // namespace qsearch
