// The engine's matrix products through cuBLASLt: bf16 inputs, fp32 accumulation, bf16 output.
//
//   Y[M, N] = X[M, K] . W[N, K]^T      (all row-major; W is a Linear weight as stored by HF)
//
// gemm_fp8: the same product on FP8 tensor cores (sm_89+) with E4M3 operands quantized per row
// (kernels/quant_fp8.cuh): Y[m, n] = bf16(sx[m] * sw[n] * sum_k Xq[m, k] Wq[n, k]), fp32
// accumulation. The scales are applied by cuBLASLt's outer-vector scale modes
// (CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F) where the library supports them for the shape,
// otherwise by one extra pass over Y (launch_scale_outer); fp8_outer_scaling() says which. By
// default FP8 products use cuBLASLt's exact ("split") accumulation; set_fp8_fast_accum(true)
// trades accuracy for speed (Hopper's FP8 MMA accumulates with fewer mantissa bits).
//
// One GemmRunner per engine (per device); it owns the cuBLASLt handle and workspace and caches
// the heuristic's algorithm per (M, N, K) so a steady stream of batches costs one lookup per
// product. Calls may be captured into a CUDA graph (the workspace is fixed).
// Concurrency: not thread-safe (one engine runs one batch at a time).
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <tuple>

#include "common.cuh"
#include "quant_fp8.cuh"

namespace qsearch {

class GemmRunner {
 public:
  GemmRunner() = default;
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  // Creates the handle and a workspace of workspace_bytes on the current device.
  Status init(size_t workspace_bytes = 32u << 20);
  size_t workspace_bytes() const { return workspace_bytes_; }

  Status gemm(const bf16* x, const bf16* w, bf16* y, int m, int n, int k, cudaStream_t stream);
  // x [m, k] and w [n, k] E4M3 with scales sx [m], sw [n]; m, n, k multiples of 16 (cuBLASLt's
  // FP8 layout rule; the engine pads m to 64). Needs an sm_89+ GPU.
  Status gemm_fp8(const fp8e4* x, const float* sx, const fp8e4* w, const float* sw, bf16* y, int m,
                  int n, int k, cudaStream_t stream);
  // Picks (and caches) the algorithm for a shape ahead of time, e.g. before a graph capture.
  Status prepare(int m, int n, int k) {
    Plan* p = nullptr;
    return plan_for(m, n, k, false, &p);
  }
  Status prepare_fp8(int m, int n, int k) {
    Plan* p = nullptr;
    return plan_for(m, n, k, true, &p);
  }

  // Before the first FP8 product: false forces the separate scaling pass (tests use it to
  // cover both paths); true (default) tries cuBLASLt's outer-vector scaling first.
  void set_fp8_outer_scaling(bool on) { fp8_outer_ = on; }
  bool fp8_outer_scaling() const { return fp8_outer_; }
  void set_fp8_fast_accum(bool on) { fp8_fast_accum_ = on; }

 private:
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  Status plan_for(int m, int n, int k, bool fp8, Plan** plan);
  Status make_plan(int m, int n, int k, bool fp8, bool outer, Plan* p);
  void drop_fp8_plans();

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  float* dummy_scales_ = nullptr;  // 256 bytes: the scale pointers while the heuristic runs
  bool fp8_outer_ = true;
  bool fp8_fast_accum_ = false;
  std::map<std::tuple<int, int, int, bool>, Plan> plans_;
};

}  // namespace qsearch
