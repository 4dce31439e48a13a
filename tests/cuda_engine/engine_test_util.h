// Helpers of the CUDA engine tests: test models written once per process into a temp dir,
// random token sequences, cosine similarity.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "embed/embedder.h"
#include "embed/engine/backend.h"
#include "embed/model/test_model.h"

#define QS_REQUIRE_GPU()                                                         \
  do {                                                                           \
    if (::qsearch::cuda_device_count() == 0)                                     \
      GTEST_SKIP() << "no CUDA device visible (or built without CUDA): skipped"; \
  } while (0)

#define QS_ASSERT_OK(expr)                             \
  do {                                                 \
    ::qsearch::Status qs_st_ = (expr);                 \
    ASSERT_TRUE(qs_st_.is_ok()) << qs_st_.to_string(); \
  } while (0)

namespace qsearch::testing {

// $QSEARCH_DEPS_DIR overrides the build's .deps (the GPU machine runs a copied bundle).
inline std::string tokenizer_path() {
  const char* env = std::getenv("QSEARCH_DEPS_DIR");
  return std::string(env && *env ? env : QSEARCH_DEPS_DIR) + "/qwen3/tokenizer.json";
}

// A test model directory for (shape, layers, dtype, shards, prefix), written on first use.
// Returns "" (and the test should skip) when the tokenizer from `make deps` is missing.
inline std::string test_model_dir(const std::string& shape, int layers, DType dtype = DType::kBF16,
                                  int shards = 1, bool prefix = false) {
  static std::map<std::string, std::string> made;
  if (!std::filesystem::exists(tokenizer_path())) return "";
  const std::string key = shape + "-" + std::to_string(layers) + "-" + dtype_name(dtype) + "-" +
                          std::to_string(shards) + (prefix ? "-prefix" : "");
  auto it = made.find(key);
  if (it != made.end()) return it->second;
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("qsearch-cuda-test-" + std::to_string(::getpid())) / key)
                              .string();
  TestModelOptions o;
  o.tokenizer_path = tokenizer_path();
  o.out_dir = dir;
  o.shape = shape;
  o.layers = layers;
  o.dtype = dtype;
  o.shards = shards;
  o.prefix = prefix;
  auto info = write_test_model(o);
  if (!info.is_ok()) {
    ADD_FAILURE() << "write_test_model: " << info.status().to_string();
    return "";
  }
  made[key] = dir;
  return dir;
}

// A random sequence of len tokens ending with <|endoftext|>.
inline std::vector<int32_t> random_sequence(int len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(len);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % 150000);
  ids.back() = kEndOfTextId;
  return ids;
}

inline double cosine(const float* a, const float* b, int n) {
  double ab = 0, aa = 0, bb = 0;
  for (int i = 0; i < n; ++i) {
    ab += static_cast<double>(a[i]) * b[i];
    aa += static_cast<double>(a[i]) * a[i];
    bb += static_cast<double>(b[i]) * b[i];
  }
  return ab / std::sqrt(std::max(aa * bb, 1e-300));
}

// Embeds the sequences as one batch; out gets n rows of hidden floats.
inline Status embed_all(Backend& b, const std::vector<std::vector<int32_t>>& seqs,
                        const std::vector<int32_t>& dims, std::vector<float>* out) {
  EngineBatch batch;
  for (size_t i = 0; i < seqs.size(); ++i)
    batch.add(seqs[i], dims.empty() ? b.hidden_size() : dims[i]);
  out->assign(seqs.size() * b.hidden_size(), -7.0f);
  return b.embed(batch, out->data());
}

}  // namespace qsearch::testing
