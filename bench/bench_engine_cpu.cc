// qsearch-bench-engine-cpu: throughput of the CPU reference engine on a model directory.
//
//   qsearch-bench-engine-cpu --model DIR [--seq-len 128] [--batch-tokens 8192] [--threads 0]
//                            [--iters 3]
//
// Runs full batches of random sequences of seq-len tokens (each ending with <|endoftext|>)
// and prints tokens/s, sequences/s and GFLOP/s (ModelConfig::flops_per_sequence) as one JSON
// line. Make a model with `qsearch make-test-model` (e.g. --shape 0.6B --layers 2).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "embed/embedder.h"
#include "embed/engine/cpu_engine.h"
#include "embed/model/test_model.h"

using namespace qsearch;

int main(int argc, char** argv) {
  std::string model;
  int64_t seq_len = 128, batch_tokens = 8192;
  int threads = 0, iters = 3;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--model")
      model = next();
    else if (a == "--seq-len")
      seq_len = std::stoll(next());
    else if (a == "--batch-tokens")
      batch_tokens = std::stoll(next());
    else if (a == "--threads")
      threads = std::stoi(next());
    else if (a == "--iters")
      iters = std::stoi(next());
    else {
      std::fprintf(stderr,
                   "usage: qsearch-bench-engine-cpu --model DIR [--seq-len N] "
                   "[--batch-tokens N] [--threads N] [--iters N]\n");
      return 2;
    }
  }
  if (model.empty() || seq_len < 1 || iters < 1) {
    std::fprintf(stderr, "--model DIR is required\n");
    return 2;
  }
  auto config = ModelConfig::from_file(model + "/config.json");
  if (!config.is_ok()) {
    std::fprintf(stderr, "%s\n", config.status().to_string().c_str());
    return 1;
  }
  auto t_load = std::chrono::steady_clock::now();
  auto engine = CpuEngine::create(model, *config, {std::max(batch_tokens, seq_len), threads});
  if (!engine.is_ok()) {
    std::fprintf(stderr, "%s\n", engine.status().to_string().c_str());
    return 1;
  }
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  TestRng rng(1);
  EngineBatch batch;
  int64_t n = std::max<int64_t>(1, batch_tokens / seq_len);
  for (int64_t s = 0; s < n; ++s) {
    std::vector<int32_t> ids;
    for (int64_t t = 0; t + 1 < seq_len; ++t)
      ids.push_back(static_cast<int32_t>(rng.next_u64() % config->vocab_size));
    ids.push_back(kEndOfTextId);
    batch.add(ids, config->hidden_size);
  }
  std::vector<float> out(n * config->hidden_size);
  Status warm = (*engine)->embed(batch, out.data());  // warm-up: workspace, RoPE table
  if (!warm.is_ok()) {
    std::fprintf(stderr, "%s\n", warm.to_string().c_str());
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) {
    Status s = (*engine)->embed(batch, out.data());
    if (!s.is_ok()) {
      std::fprintf(stderr, "%s\n", s.to_string().c_str());
      return 1;
    }
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double tokens = static_cast<double>(batch.num_tokens()) * iters;
  double flops = config->flops_per_sequence(seq_len) * n * iters;
  std::printf(
      "{\"model\":\"%s\",\"hidden\":%d,\"layers\":%d,\"seq_len\":%lld,\"sequences\":%lld,"
      "\"iters\":%d,\"load_s\":%.2f,\"seconds\":%.3f,\"tokens_per_s\":%.1f,"
      "\"sequences_per_s\":%.2f,\"gflops\":%.2f}\n",
      model.c_str(), config->hidden_size, config->num_layers, static_cast<long long>(seq_len),
      static_cast<long long>(n), iters, load_s, secs, tokens / secs, n * iters / secs,
      flops / secs / 1e9);
  return 0;
}
