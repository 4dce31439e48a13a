// `qsearch embed --device cuda` end to end (the command hf_parity.py drives): stdout holds exactly
// one JSON array per input line (no log lines: the engine logs to stderr), and the vectors agree
// with `--device cpu`.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine_test_util.h"

namespace qsearch {
namespace {

using namespace qsearch::testing;

// $QSEARCH_BINARY overrides the build's binary (the GPU machine runs a copied bundle).
std::string qsearch_binary() {
  const char* env = std::getenv("QSEARCH_BINARY");
  return env && *env ? env : QSEARCH_BINARY;
}

// Runs `qsearch embed` on the given stdin; returns stdout lines.
std::vector<std::string> run_embed(const std::string& args, const std::string& input, int* rc) {
  const std::string in_path = ::testing::TempDir() + "qsearch_cli_cuda_in.jsonl";
  std::ofstream(in_path) << input;
  const std::string cmd = qsearch_binary() + " embed " + args + " < " + in_path + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[65536];
  size_t n;
  while (p && (n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  *rc = p ? ::pclose(p) : -1;
  std::vector<std::string> lines;
  std::istringstream ss(out);
  for (std::string line; std::getline(ss, line);) lines.push_back(line);
  return lines;
}

TEST(EmbedCliCuda, IdsOnStdoutMatchCpu) {
  QS_REQUIRE_GPU();
  std::string dir = test_model_dir("tiny", 0);
  if (dir.empty()) GTEST_SKIP() << "tokenizer missing (make deps)";
  std::string input;
  for (int len : {1, 40, 300}) input += nlohmann::json(random_sequence(len, len)).dump() + "\n";
  int rc_gpu = 0, rc_cpu = 0;
  auto gpu = run_embed("--model " + dir + " --device cuda --ids", input, &rc_gpu);
  auto cpu = run_embed("--model " + dir + " --device cpu --ids", input, &rc_cpu);
  ASSERT_EQ(rc_gpu, 0);
  ASSERT_EQ(rc_cpu, 0);
  ASSERT_EQ(gpu.size(), 3u) << "stdout must hold one line per input";
  ASSERT_EQ(cpu.size(), 3u);
  for (size_t i = 0; i < gpu.size(); ++i) {
    auto a = nlohmann::json::parse(gpu[i], nullptr, false);
    auto b = nlohmann::json::parse(cpu[i], nullptr, false);
    ASSERT_TRUE(a.is_array()) << "not a JSON array: " << gpu[i].substr(0, 80);
    ASSERT_TRUE(b.is_array());
    std::vector<float> va = a.get<std::vector<float>>(), vb = b.get<std::vector<float>>();
    ASSERT_EQ(va.size(), vb.size());
    EXPECT_GE(cosine(va.data(), vb.data(), static_cast<int>(va.size())), 0.999) << "line " << i;
  }
}

}  // namespace
}  // namespace qsearch
