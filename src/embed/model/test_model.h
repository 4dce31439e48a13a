// A random-weight Qwen3 model in the Hugging Face layout, so tests, examples and benchmarks run
// without downloads (`qsearch make-test-model`). The directory holds config.json (like a real
// Qwen3-Embedding one), tokenizer.json (the given one with Qwen3-Embedding's post-processor,
// which appends <|endoftext|>), tokenizer_config.json, test_model.json (seed, shape, checksum)
// and model.safetensors, or model-0000i-of-0000N.safetensors + model.safetensors.index.json.
// The reranker variant is laid out like a Qwen3-Reranker download instead: the tokenizer.json
// as given (a plain Qwen3 one adds no token), tensor names with "model.", and the LM head tied to
// the embedding table (tie_word_embeddings true, as 0.6B/4B) or its own lm_head.weight (8B).
//
// Weights are deterministic from the seed (splitmix64 + Box-Muller, generated in a fixed
// tensor order whatever the layout): matrices N(0, 0.02), the embedding table N(0, 0.05),
// norm weights 1 + N(0, 0.1) so that they matter. Normal number j of the stream depends only on
// (seed, j), so large tensors are generated on all cores with the same result. The checksum
// (FNV-1a 64 over each tensor's bare name and stored bytes, in that order) changes when the
// generator does; reference outputs computed from a test model record it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "embed/model/config.h"
#include "embed/model/weights.h"

namespace qsearch {

struct TestModelOptions {
  std::string tokenizer_path;  // a Qwen2/Qwen3 tokenizer.json (required)
  std::string out_dir;         // created if missing; existing files are overwritten
  uint64_t seed = 42;
  std::string shape = "tiny";  // tiny (hidden 128, 2 layers, 4 heads, 2 KV), 0.6B, 4B, 8B
  int layers = 0;              // 0: the shape's number of layers
  bool prefix = false;         // tensor names with "model." (Qwen3-Embedding ships without)
  int shards = 1;              // > 1: sharded with model.safetensors.index.json
  DType dtype = DType::kBF16;  // stored dtype
  bool lm_head = false;        // also write lm_head.weight (the loader must ignore it)
  bool reranker = false;       // Qwen3-Reranker layout (see above; implies prefix)
  bool tied = true;            // reranker: LM head tied to embed_tokens; false writes lm_head
  int threads = 0;             // generator threads (0: all cores)
};

struct TestModelInfo {
  ModelConfig config;
  uint64_t checksum = 0;
  int64_t bytes = 0;               // tensor bytes written
  std::vector<std::string> files;  // files written, relative to out_dir
};

// The config of a shape ("tiny", "0.6B", "4B", "8B"), layers overridden when > 0.
StatusOr<ModelConfig> test_model_config(const std::string& shape, int layers = 0);

StatusOr<TestModelInfo> write_test_model(const TestModelOptions& options);

// 16 lowercase hex digits.
std::string checksum_hex(uint64_t checksum);

// The deterministic generator, exposed for tests: splitmix64 and Box-Muller normals.
class TestRng {
 public:
  explicit TestRng(uint64_t seed) : state_(seed) {}
  uint64_t next_u64();
  double uniform();  // in (0, 1)
  double normal();   // N(0, 1)
  // The j-th value normal() returns from a fresh TestRng(seed) (random access into the stream).
  static double normal_at(uint64_t seed, uint64_t j);
  // Values 2p and 2p+1 of that stream (one Box-Muller pair).
  static void normal_pair(uint64_t seed, uint64_t p, double* first, double* second);

 private:
  uint64_t state_;
  bool has_spare_ = false;
  double spare_ = 0;
};

}  // namespace qsearch
