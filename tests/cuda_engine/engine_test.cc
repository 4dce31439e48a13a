// The CUDA engine against the CPU reference engine (the fp32 oracle, itself checked against
// Hugging Face) on random-weight test models, plus the engine's own contracts: batch
// independence, graph replay == eager, MRL dims, long inputs, errors, memory reporting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "engine_test_util.h"

#if QSEARCH_HAVE_CUDA
#include "embed/engine/cpu_engine.h"
#include "embed/engine/cuda/cuda_engine.h"
#include "embed/model/config.h"

namespace qsearch {
namespace {

using namespace qsearch::testing;

struct Engines {
  ModelConfig config;
  std::unique_ptr<Backend> cpu, cuda;
};

// Loads both engines for a test model, or explains why not (skip).
std::string load(const std::string& dir, Engines* e, CudaEngineOptions opts = {}) {
  if (dir.empty()) return "tokenizer .deps/qwen3/tokenizer.json missing (run make deps)";
  auto cfg = ModelConfig::from_file(dir + "/config.json");
  if (!cfg.is_ok()) return cfg.status().to_string();
  e->config = *cfg;
  auto cpu = CpuEngine::create(dir, *cfg);
  if (!cpu.is_ok()) return cpu.status().to_string();
  e->cpu = std::move(cpu).value();
  auto cuda = make_cuda_engine(dir, *cfg, opts);
  if (!cuda.is_ok()) return cuda.status().to_string();
  e->cuda = std::move(cuda).value();
  return "";
}

#define QS_LOAD(dir, engines, ...)                       \
  do {                                                   \
    std::string why = load(dir, engines, ##__VA_ARGS__); \
    if (dir.empty()) GTEST_SKIP() << why;                \
    ASSERT_EQ(why, "");                                  \
  } while (0)

// Embeds the same batch with both engines; every row must agree to min_cos.
void expect_match_cpu(Engines& e, const std::vector<int>& lens, const std::vector<int32_t>& dims,
                      double min_cos, uint32_t seed) {
  std::vector<std::vector<int32_t>> seqs;
  for (size_t i = 0; i < lens.size(); ++i) seqs.push_back(random_sequence(lens[i], seed + i));
  std::vector<float> a, b;
  QS_ASSERT_OK(embed_all(*e.cpu, seqs, dims, &a));
  QS_ASSERT_OK(embed_all(*e.cuda, seqs, dims, &b));
  const int h = e.config.hidden_size;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int dim = dims.empty() ? h : dims[i];
    const double c = cosine(&a[i * h], &b[i * h], dim);
    EXPECT_GE(c, min_cos) << "sequence " << i << " of " << lens[i] << " tokens, dim " << dim;
    double norm = 0;
    for (int j = 0; j < h; ++j) {
      const float v = b[i * h + j];
      ASSERT_TRUE(std::isfinite(v));
      if (j >= dim) {
        ASSERT_EQ(v, 0.0f) << "component " << j << " past dim " << dim;
      }
      norm += static_cast<double>(v) * v;
    }
    EXPECT_NEAR(norm, 1.0, 1e-4);
  }
}

TEST(CudaEngine, TinyMatchesCpuEngine) {
  QS_REQUIRE_GPU();
  Engines e;
  std::string dir = test_model_dir("tiny", 0);
  QS_LOAD(dir, &e);
  expect_match_cpu(e, {1, 5, 17, 64, 65, 200, 700, 3}, {}, 0.999, 1);
}

TEST(CudaEngine, TinyMatchesCpuEngineWithMrlDims) {
  QS_REQUIRE_GPU();
  Engines e;
  std::string dir = test_model_dir("tiny", 0);
  QS_LOAD(dir, &e);
  expect_match_cpu(e, {9, 33, 120, 2}, {32, 128, 64, 100}, 0.999, 50);
}

TEST(CudaEngine, Shape06BMatchesCpuEngine) {
  QS_REQUIRE_GPU();
  Engines e;
  std::string dir = test_model_dir("0.6B", 2);
  QS_LOAD(dir, &e);
  expect_match_cpu(e, {3, 100, 513, 31}, {}, 0.999, 100);
}

TEST(CudaEngine, Shape4BMatchesCpuEngine) {
  QS_REQUIRE_GPU();
  Engines e;
  std::string dir = test_model_dir("4B", 2);
  QS_LOAD(dir, &e);
  expect_match_cpu(e, {2, 77, 300}, {}, 0.999, 200);
}

TEST(CudaEngine, F32ShardedPrefixedCheckpoint) {
  QS_REQUIRE_GPU();
  Engines e;
  std::string dir = test_model_dir("tiny", 0, DType::kF32, 3, true);
  QS_LOAD(dir, &e);
  expect_match_cpu(e, {4, 90}, {}, 0.999, 300);
}

TEST(CudaEngine, F16Checkpoint) {
  QS_REQUIRE_GPU();
  Engines e;
  std::string dir = test_model_dir("tiny", 0, DType::kF16);
  QS_LOAD(dir, &e);
  expect_match_cpu(e, {6, 70}, {}, 0.999, 400);
}

TEST(CudaEngine, LongSequenceMatchesCpuEngine) {
  QS_REQUIRE_GPU();
  Engines e;
  std::string dir = test_model_dir("tiny", 0);
  QS_LOAD(dir, &e);
  expect_match_cpu(e, {4096}, {}, 0.999, 500);
}

TEST(CudaEngine, Sequence32kTokensRuns) {
  QS_REQUIRE_GPU();
  Engines e;
  std::string dir = test_model_dir("tiny", 0);
  QS_LOAD(dir, &e);
  ASSERT_GE(e.cuda->max_sequence_tokens(), 32768);
  std::vector<float> out;
  QS_ASSERT_OK(embed_all(*e.cuda, {random_sequence(32768, 9)}, {}, &out));
  double norm = 0;
  for (float v : out) {
    ASSERT_TRUE(std::isfinite(v));
    norm += static_cast<double>(v) * v;
  }
  EXPECT_NEAR(norm, 1.0, 1e-4);
  // the same text again: same result
  std::vector<float> again;
  QS_ASSERT_OK(embed_all(*e.cuda, {random_sequence(32768, 9)}, {}, &again));
  EXPECT_GE(cosine(out.data(), again.data(), e.config.hidden_size), 0.99999);
}

// A text's embedding does not depend on what else is in its batch.
void expect_batch_independent(const std::string& shape, int layers) {
  Engines e;
  std::string dir = test_model_dir(shape, layers);
  if (dir.empty()) GTEST_SKIP() << "tokenizer missing (make deps)";
  auto cfg = ModelConfig::from_file(dir + "/config.json");
  ASSERT_TRUE(cfg.is_ok());
  auto cuda = make_cuda_engine(dir, *cfg, {});
  ASSERT_TRUE(cuda.is_ok()) << cuda.status().to_string();
  Backend& b = **cuda;
  const int h = cfg->hidden_size;
  const std::vector<int> lens = {1, 12, 64, 65, 190, 777};
  std::vector<std::vector<int32_t>> seqs;
  for (size_t i = 0; i < lens.size(); ++i) seqs.push_back(random_sequence(lens[i], 1000 + i));
  std::vector<std::vector<float>> alone(seqs.size());
  for (size_t i = 0; i < seqs.size(); ++i) QS_ASSERT_OK(embed_all(b, {seqs[i]}, {}, &alone[i]));

  std::mt19937 rng(5);
  for (int trial = 0; trial < 4; ++trial) {
    // the texts shuffled among fillers; trial 3 is big enough to skip the graph path
    std::vector<std::vector<int32_t>> batch;
    std::vector<int> where(seqs.size());
    std::vector<size_t> order(seqs.size());
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng);
    for (size_t k = 0; k < order.size(); ++k) {
      const int fillers = trial == 3 ? 3 : static_cast<int>(rng() % 3);
      for (int f = 0; f < fillers; ++f)
        batch.push_back(random_sequence(trial == 3 ? 900 : 1 + static_cast<int>(rng() % 300),
                                        static_cast<uint32_t>(rng())));
      where[order[k]] = static_cast<int>(batch.size());
      batch.push_back(seqs[order[k]]);
    }
    std::vector<float> out;
    QS_ASSERT_OK(embed_all(b, batch, {}, &out));
    for (size_t i = 0; i < seqs.size(); ++i) {
      const double c = cosine(alone[i].data(), &out[static_cast<size_t>(where[i]) * h], h);
      EXPECT_GE(c, 0.9999) << "trial " << trial << ", text of " << lens[i] << " tokens";
    }
  }
}

TEST(CudaEngine, BatchIndependenceTiny) {
  QS_REQUIRE_GPU();
  expect_batch_independent("tiny", 0);
}

TEST(CudaEngine, BatchIndependence06B) {
  QS_REQUIRE_GPU();
  expect_batch_independent("0.6B", 2);
}

TEST(CudaEngine, GraphReplayMatchesEager) {
  QS_REQUIRE_GPU();
  std::string dir = test_model_dir("0.6B", 2);
  if (dir.empty()) GTEST_SKIP() << "tokenizer missing (make deps)";
  auto cfg = ModelConfig::from_file(dir + "/config.json");
  ASSERT_TRUE(cfg.is_ok());
  CudaEngineOptions eager_opts;
  eager_opts.graph_max_tokens = 0;
  auto graph = make_cuda_engine(dir, *cfg, {});
  auto eager = make_cuda_engine(dir, *cfg, eager_opts);
  ASSERT_TRUE(graph.is_ok() && eager.is_ok());
  const int h = cfg->hidden_size;
  for (int round = 0; round < 3; ++round) {  // replays of the same captured graph
    std::vector<std::vector<int32_t>> seqs = {random_sequence(30, round),
                                              random_sequence(5, 7 + round), random_sequence(1, 9)};
    std::vector<float> a, b;
    QS_ASSERT_OK(embed_all(**graph, seqs, {}, &a));
    QS_ASSERT_OK(embed_all(**eager, seqs, {}, &b));
    for (size_t i = 0; i < seqs.size(); ++i)
      EXPECT_GE(cosine(&a[i * h], &b[i * h], h), 0.99999) << "round " << round << " seq " << i;
  }
}

TEST(CudaEngine, RejectsInvalidBatches) {
  QS_REQUIRE_GPU();
  std::string dir = test_model_dir("tiny", 0);
  if (dir.empty()) GTEST_SKIP() << "tokenizer missing (make deps)";
  auto cfg = ModelConfig::from_file(dir + "/config.json");
  ASSERT_TRUE(cfg.is_ok());
  CudaEngineOptions o;
  o.max_batch_tokens = 1000;
  auto eng = make_cuda_engine(dir, *cfg, o);
  ASSERT_TRUE(eng.is_ok()) << eng.status().to_string();
  Backend& b = **eng;
  EXPECT_EQ(b.max_batch_tokens(), 1000);
  std::vector<float> out;
  auto bad_id = random_sequence(10, 1);
  bad_id[3] = static_cast<int32_t>(cfg->vocab_size);
  EXPECT_EQ(embed_all(b, {bad_id}, {}, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(embed_all(b, {random_sequence(600, 1), random_sequence(600, 2)}, {}, &out).code(),
            StatusCode::kInvalidArgument);  // over the batch budget
  EXPECT_EQ(embed_all(b, {random_sequence(10, 1)}, {0}, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(embed_all(b, {random_sequence(10, 1)}, {129}, &out).code(),
            StatusCode::kInvalidArgument);
  // a single long sequence may exceed the batch budget, up to max_sequence_tokens
  QS_ASSERT_OK(embed_all(b, {random_sequence(5000, 3)}, {}, &out));
  // and the engine still works after errors
  QS_ASSERT_OK(embed_all(b, {random_sequence(10, 1)}, {}, &out));
}

TEST(CudaEngine, ReportsMemoryAndRefusesModelsThatDoNotFit) {
  QS_REQUIRE_GPU();
  auto cfg = test_model_config("0.6B", 2);
  ASSERT_TRUE(cfg.is_ok());
  CudaEngineOptions o;
  o.max_batch_tokens = 4096;
  auto eng = make_random_cuda_engine(*cfg, o);
  ASSERT_TRUE(eng.is_ok()) << eng.status().to_string();
  EngineMemory m = (*eng)->memory();
  const int64_t h = 1024, q = 2048, kv = 1024, inter = 3072;
  const int64_t matrices = 151669 * h + 2 * ((q + 2 * kv) * h + h * q + 3 * inter * h);
  EXPECT_GE(m.weights_bytes, matrices * 2);
  EXPECT_LT(m.weights_bytes, matrices * 2 + (1 << 20));
  EXPECT_GT(m.workspace_bytes, 32768 * h * 4);  // a 32k-token input fits
  EXPECT_GT(m.device_total_bytes, 0);
  EXPECT_LE(m.device_free_bytes, m.device_total_bytes);

  ModelConfig huge = *cfg;
  huge.num_layers = 5000;  // ~2.5 TB of weights
  auto no = make_random_cuda_engine(huge, o);
  ASSERT_FALSE(no.is_ok());
  EXPECT_EQ(no.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(no.status().message().find("does not fit"), std::string::npos) << no.status().message();
  // the device is still usable
  std::vector<float> out;
  QS_ASSERT_OK(embed_all(**eng, {random_sequence(40, 1)}, {}, &out));
}

TEST(CudaEngine, RejectsMissingDevice) {
  QS_REQUIRE_GPU();
  auto cfg = test_model_config("tiny");
  ASSERT_TRUE(cfg.is_ok());
  CudaEngineOptions o;
  o.device = cuda_device_count();
  auto eng = make_random_cuda_engine(*cfg, o);
  ASSERT_FALSE(eng.is_ok());
  EXPECT_EQ(eng.status().code(), StatusCode::kInvalidArgument);
}

TEST(CudaEngine, EveryVisibleGpuGivesTheSameResult) {
  QS_REQUIRE_GPU();
  if (cuda_device_count() < 2) GTEST_SKIP() << "only one GPU visible";
  std::string dir = test_model_dir("tiny", 0);
  if (dir.empty()) GTEST_SKIP() << "tokenizer missing (make deps)";
  auto cfg = ModelConfig::from_file(dir + "/config.json");
  ASSERT_TRUE(cfg.is_ok());
  std::vector<float> first;
  for (int d = 0; d < cuda_device_count(); ++d) {
    auto eng = make_cuda_backend(dir, *cfg, 0, d);
    ASSERT_TRUE(eng.is_ok()) << eng.status().to_string();
    EXPECT_EQ((*eng)->name(), "cuda:" + std::to_string(d));
    std::vector<float> out;
    QS_ASSERT_OK(embed_all(**eng, {random_sequence(50, 3)}, {}, &out));
    if (d == 0) {
      first = out;
    } else {
      EXPECT_GE(cosine(first.data(), out.data(), cfg->hidden_size), 0.99999) << "cuda:" << d;
    }
  }
}

}  // namespace
}  // namespace qsearch

#else
TEST(CudaEngine, SkippedWithoutCuda) { GTEST_SKIP() << "built without CUDA (QSEARCH_CUDA=OFF)"; }
#endif
