// qsearch-bench-attention-cuda: the causal flash attention kernel alone (kernels/attention.cu),
// head_dim 128, at 128, 512, 2048 and 8192 tokens per sequence, batches of 16384 tokens in all
// (as FlashAttention's own benchmark: batch = 16384 / seqlen), for the two Qwen3 head layouts
// (16 q / 8 kv heads as 0.6B, 32 q / 8 kv as 4B and 8B).
// FLOPs counted as causal: 2 products * 2 * N^2 * d * heads / 2 per sequence.
// Output: one JSON line per measurement, then a table. Timing: CUDA events, median of 30 runs
// after 5 warm-ups, inputs random (never zeros).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "attention.cuh"
#include "fill.cuh"

using namespace qsearch;

namespace {

#define BENCH_CHECK(expr)                                                                  \
  do {                                                                                     \
    Status st_ = (expr);                                                                   \
    if (!st_.is_ok()) {                                                                    \
      std::fprintf(stderr, "qsearch-bench-attention-cuda: %s\n", st_.to_string().c_str()); \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

Status cuda_ok(cudaError_t e, const char* what) {
  return e == cudaSuccess ? Status::ok() : cuda_status(e, what, __FILE__, __LINE__);
}

struct Row {
  int seqlen, batch, hq, hkv, block_m;
  double ms, tflops;
};

}  // namespace

int main(int argc, char** argv) {
  int total_tokens = 16384;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::printf("usage: qsearch-bench-attention-cuda [--tokens N (default 16384)]\n");
      return 0;
    }
    if (a == "--tokens" && i + 1 < argc) total_tokens = std::stoi(argv[++i]);
  }
  cudaDeviceProp prop{};
  BENCH_CHECK(cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties"));
  std::printf("{\"gpu\":\"%s\",\"sms\":%d}\n", prop.name, prop.multiProcessorCount);
  std::vector<Row> rows;
  for (auto [hq, hkv] : {std::pair{16, 8}, std::pair{32, 8}}) {
    for (int n : {128, 512, 2048, 8192}) {
      for (int block_m : {64, 128}) {
        const int batch = std::max(1, total_tokens / n);
        const int tokens = batch * n;
        const int64_t ld = (hq + 2 * hkv) * 128;
        bf16 *qkv = nullptr, *out = nullptr;
        int32_t* meta = nullptr;
        BENCH_CHECK(
            cuda_ok(cudaMalloc(reinterpret_cast<void**>(&qkv), tokens * ld * 2), "cudaMalloc"));
        BENCH_CHECK(cuda_ok(cudaMalloc(reinterpret_cast<void**>(&out), tokens * hq * 128 * 2),
                            "cudaMalloc"));
        BENCH_CHECK(launch_fill_random_bf16(qkv, tokens * ld, 1.0f, n + hq, 0));
        std::vector<int32_t> cu(batch + 1);
        for (int b = 0; b <= batch; ++b) cu[b] = b * n;
        std::vector<AttentionTile> tiles;
        build_attention_tiles(cu.data(), batch, block_m, &tiles);
        const int num_tiles = static_cast<int>(tiles.size());
        BENCH_CHECK(cuda_ok(cudaMalloc(reinterpret_cast<void**>(&meta), 16 + tiles.size() * 16),
                            "cudaMalloc"));
        BENCH_CHECK(cuda_ok(cudaMemcpy(meta, &num_tiles, 4, cudaMemcpyHostToDevice), "memcpy"));
        BENCH_CHECK(
            cuda_ok(cudaMemcpy(meta + 4, tiles.data(), tiles.size() * 16, cudaMemcpyHostToDevice),
                    "memcpy"));
        const auto* d_tiles = reinterpret_cast<const AttentionTile*>(meta + 4);
        cudaEvent_t e0, e1;
        cudaEventCreate(&e0);
        cudaEventCreate(&e1);
        std::vector<float> times;
        for (int it = 0; it < 35; ++it) {
          cudaEventRecord(e0);
          BENCH_CHECK(launch_attention(qkv, hq, hkv, block_m, d_tiles, meta, num_tiles,
                                       0.08838834764f, out, 0));
          cudaEventRecord(e1);
          BENCH_CHECK(cuda_ok(cudaEventSynchronize(e1), "cudaEventSynchronize"));
          float ms = 0;
          cudaEventElapsedTime(&ms, e0, e1);
          if (it >= 5) times.push_back(ms);
        }
        std::sort(times.begin(), times.end());
        const double ms = times[times.size() / 2];
        const double flops = 2.0 * 2.0 * n * static_cast<double>(n) * 128 * hq / 2.0 * batch;
        const double tflops = flops / (ms * 1e-3) / 1e12;
        rows.push_back({n, batch, hq, hkv, block_m, ms, tflops});
        std::printf(
            "{\"bench\":\"attention\",\"seqlen\":%d,\"batch\":%d,\"q_heads\":%d,\"kv_heads\":%d,"
            "\"head_dim\":128,\"causal\":true,\"block_m\":%d,\"engine_default\":%s,"
            "\"ms\":%.4f,\"tflops\":%.1f}\n",
            n, batch, hq, hkv, block_m,
            block_m == attention_block_m(cu.data(), batch) ? "true" : "false", ms, tflops);
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
        cudaFree(qkv);
        cudaFree(out);
        cudaFree(meta);
      }
    }
  }
  std::printf("\n%-8s %-6s %-8s %-8s %-10s %-8s\n", "seqlen", "batch", "heads", "block_m", "ms",
              "TFLOP/s");
  for (const auto& r : rows)
    std::printf("%-8d %-6d %2d/%-5d %-8d %-10.4f %-8.1f\n", r.seqlen, r.batch, r.hq, r.hkv,
                r.block_m, r.ms, r.tflops);
  std::printf(
      "(targets on H100: PyTorch FA2 69/194/304/327, cuDNN 94/357/537/630 TFLOP/s at "
      "128/512/2048/8192)\n");
  return 0;
}
