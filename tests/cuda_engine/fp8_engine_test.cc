// The FP8 engine (CudaEngineOptions::dtype = kFP8) against the CPU fp32 engine on random-weight
// test models, per length bucket, with the bf16 engine's figures printed beside it; its memory,
// its random weights (the bf16 engine's, quantized) and graph replay == eager.
// Needs an sm_89+ GPU: elsewhere the tests check the refusal instead, or skip visibly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "engine_test_util.h"

#if QSEARCH_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "embed/engine/cpu_engine.h"
#include "embed/engine/cuda/cuda_engine.h"
#include "embed/model/config.h"

namespace qsearch {
namespace {

using namespace qsearch::testing;

bool gpu_has_fp8() {
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  return major * 10 + minor >= 89;
}

#define QS_REQUIRE_FP8_GPU()                                                      \
  do {                                                                            \
    QS_REQUIRE_GPU();                                                             \
    if (!gpu_has_fp8()) GTEST_SKIP() << "GPU 0 has no FP8 tensor cores (sm_89+)"; \
  } while (0)

CudaEngineOptions fp8_options() {
  CudaEngineOptions o;
  o.dtype = EngineDType::kFP8;
  return o;
}

// Mean (and min) cosine of fp8 and bf16 against the CPU fp32 engine, per bucket of equal-length
// sequences embedded as one batch. The gate: fp8's mean >= 0.995 in every bucket.
void expect_buckets(const std::string& shape, int layers,
                    const std::vector<std::pair<int, int>>& buckets) {
  std::string dir = test_model_dir(shape, layers);
  if (dir.empty()) GTEST_SKIP() << "tokenizer .deps/qwen3/tokenizer.json missing (make deps)";
  auto cfg = ModelConfig::from_file(dir + "/config.json");
  ASSERT_TRUE(cfg.is_ok()) << cfg.status().to_string();
  auto cpu = CpuEngine::create(dir, *cfg);
  ASSERT_TRUE(cpu.is_ok()) << cpu.status().to_string();
  auto bf16 = make_cuda_engine(dir, *cfg, {});
  ASSERT_TRUE(bf16.is_ok()) << bf16.status().to_string();
  auto fp8 = make_cuda_engine(dir, *cfg, fp8_options());
  ASSERT_TRUE(fp8.is_ok()) << fp8.status().to_string();
  const int h = cfg->hidden_size;
  for (const auto& [len, count] : buckets) {
    std::vector<std::vector<int32_t>> seqs;
    for (int i = 0; i < count; ++i) seqs.push_back(random_sequence(len, 1000 * len + i));
    std::vector<float> ref, a, b;
    QS_ASSERT_OK(embed_all(**cpu, seqs, {}, &ref));
    QS_ASSERT_OK(embed_all(**bf16, seqs, {}, &a));
    QS_ASSERT_OK(embed_all(**fp8, seqs, {}, &b));
    double sum_a = 0, sum_b = 0, min_a = 1, min_b = 1;
    for (int i = 0; i < count; ++i) {
      for (int j = 0; j < h; ++j) ASSERT_TRUE(std::isfinite(b[size_t(i) * h + j]));
      const double ca = cosine(&ref[size_t(i) * h], &a[size_t(i) * h], h);
      const double cb = cosine(&ref[size_t(i) * h], &b[size_t(i) * h], h);
      sum_a += ca;
      sum_b += cb;
      min_a = std::min(min_a, ca);
      min_b = std::min(min_b, cb);
    }
    std::printf(
        "[ info ] %s x%d layers, %4d tokens x %d: cosine vs CPU fp32  fp8 mean %.6f min %.6f  |  "
        "bf16 mean %.6f min %.6f\n",
        shape.c_str(), layers, len, count, sum_b / count, min_b, sum_a / count, min_a);
    EXPECT_GE(sum_b / count, 0.995) << shape << " bucket " << len;
  }
}

TEST(Fp8Engine, Shape06BMeanCosinePerBucket) {
  QS_REQUIRE_FP8_GPU();
  expect_buckets("0.6B", 4, {{16, 8}, {128, 4}, {512, 2}, {2048, 1}});
}

TEST(Fp8Engine, Shape4BMeanCosinePerBucket) {
  QS_REQUIRE_FP8_GPU();
  expect_buckets("4B", 2, {{16, 4}, {128, 2}, {512, 1}});
}

TEST(Fp8Engine, TinyMixedBatchGraphEqualsEager) {
  QS_REQUIRE_FP8_GPU();
  std::string dir = test_model_dir("tiny", 0);
  if (dir.empty()) GTEST_SKIP() << "tokenizer missing (make deps)";
  auto cfg = ModelConfig::from_file(dir + "/config.json");
  ASSERT_TRUE(cfg.is_ok());
  auto cpu = CpuEngine::create(dir, *cfg);
  ASSERT_TRUE(cpu.is_ok());
  CudaEngineOptions eager_opts = fp8_options();
  eager_opts.graph_max_tokens = 0;
  auto graph = make_cuda_engine(dir, *cfg, fp8_options());
  auto eager = make_cuda_engine(dir, *cfg, eager_opts);
  ASSERT_TRUE(graph.is_ok()) << graph.status().to_string();
  ASSERT_TRUE(eager.is_ok()) << eager.status().to_string();
  std::vector<std::vector<int32_t>> seqs;
  const std::vector<int> lens = {1, 5, 17, 64, 65, 200, 700, 3};
  for (size_t i = 0; i < lens.size(); ++i) seqs.push_back(random_sequence(lens[i], 70 + i));
  const std::vector<int32_t> dims = {128, 64, 128, 32, 128, 100, 128, 128};
  std::vector<float> ref, g1, g2, e;
  QS_ASSERT_OK(embed_all(**cpu, seqs, dims, &ref));
  QS_ASSERT_OK(embed_all(**graph, seqs, dims, &g1));
  QS_ASSERT_OK(embed_all(**graph, seqs, dims, &g2));  // the replay
  QS_ASSERT_OK(embed_all(**eager, seqs, dims, &e));
  const int h = cfg->hidden_size;
  double sum = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const float* row = &g2[i * h];
    EXPECT_GE(cosine(row, &e[i * h], h), 0.99999) << "graph vs eager, sequence " << i;
    EXPECT_GE(cosine(row, &g1[i * h], h), 0.99999) << "capture vs replay, sequence " << i;
    sum += cosine(row, &ref[i * h], dims[i]);
    double norm = 0;
    for (int j = 0; j < h; ++j) {
      if (j >= dims[i]) ASSERT_EQ(row[j], 0.0f) << "component " << j << " past dim " << dims[i];
      norm += static_cast<double>(row[j]) * row[j];
    }
    EXPECT_NEAR(norm, 1.0, 1e-4);
  }
  std::printf("[ info ] tiny: fp8 mean cosine vs CPU fp32 %.6f\n", sum / seqs.size());
  EXPECT_GE(sum / seqs.size(), 0.995);
}

// Weights memory: the four matrices per layer at one byte per weight plus a scale per row; the
// embedding table stays bf16.
TEST(Fp8Engine, HalvesLayerWeightMemory) {
  QS_REQUIRE_FP8_GPU();
  auto cfg = test_model_config("0.6B", 2);
  ASSERT_TRUE(cfg.is_ok());
  CudaEngineOptions o = fp8_options();
  o.max_batch_tokens = 4096;
  auto fp8 = make_random_cuda_engine(*cfg, o);
  ASSERT_TRUE(fp8.is_ok()) << fp8.status().to_string();
  o.dtype = EngineDType::kBF16;
  auto bf16 = make_random_cuda_engine(*cfg, o);
  ASSERT_TRUE(bf16.is_ok()) << bf16.status().to_string();
  const int64_t h = 1024, q = 2048, kv = 1024, inter = 3072, layers = 2;
  const int64_t embed = 151669 * h, layer = (q + 2 * kv) * h + h * q + 3 * inter * h;
  const int64_t w8 = (*fp8)->memory().weights_bytes, w16 = (*bf16)->memory().weights_bytes;
  std::printf("[ info ] 0.6B x2 layers weights: bf16 %lld bytes, fp8 %lld bytes\n",
              static_cast<long long>(w16), static_cast<long long>(w8));
  EXPECT_GE(w8, embed * 2 + layers * layer);
  EXPECT_LT(w8, embed * 2 + layers * layer + (1 << 20));
  EXPECT_EQ(w16 - w8 > layers * layer - (1 << 20), true);
  // and they compute the same function: the fp8 engine's random weights are the bf16 engine's
  std::vector<float> a, b;
  std::vector<std::vector<int32_t>> seqs = {random_sequence(300, 5), random_sequence(40, 6)};
  QS_ASSERT_OK(embed_all(**bf16, seqs, {}, &a));
  QS_ASSERT_OK(embed_all(**fp8, seqs, {}, &b));
  for (size_t i = 0; i < seqs.size(); ++i) {
    const double c = cosine(&a[i * h], &b[i * h], static_cast<int>(h));
    std::printf("[ info ] random 0.6B x2: fp8 vs bf16 engine cosine %.6f\n", c);
    EXPECT_GE(c, 0.99) << "sequence " << i;
  }
}

TEST(Fp8Engine, RefusedWithoutFp8TensorCores) {
  QS_REQUIRE_GPU();
  if (gpu_has_fp8()) GTEST_SKIP() << "GPU 0 has FP8 tensor cores: nothing to refuse";
  auto cfg = test_model_config("tiny");
  ASSERT_TRUE(cfg.is_ok());
  auto eng = make_random_cuda_engine(*cfg, fp8_options());
  ASSERT_FALSE(eng.is_ok());
  EXPECT_EQ(eng.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(eng.status().message().find(kFp8NeedsGpuMessage), std::string::npos)
      << eng.status().message();
}

}  // namespace
}  // namespace qsearch

#else
TEST(Fp8Engine, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA (QSEARCH_CUDA=OFF)"; }
#endif
