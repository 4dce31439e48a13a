// The engine's matrix products through cuBLASLt: bf16 inputs, fp32 accumulation, bf16 output.
//
//   Y[M, N] = X[M, K] . W[N, K]^T      (all row-major; W is a Linear weight as stored by HF)
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
  // Picks (and caches) the algorithm for a shape ahead of time, e.g. before a graph capture.
  Status prepare(int m, int n, int k) {
    Plan* p = nullptr;
    return plan_for(m, n, k, &p);
  }

 private:
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  Status plan_for(int m, int n, int k, Plan** plan);

  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::map<std::tuple<int, int, int>, Plan> plans_;
};

}  // namespace qsearch
