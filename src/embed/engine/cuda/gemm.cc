#include "embed/engine/cuda/gemm.h"

#include <string>

namespace qsearch {

GemmRunner::~GemmRunner() {
  for (auto& [key, p] : plans_) {
    if (p.op) cublasLtMatmulDescDestroy(p.op);
    if (p.a) cublasLtMatrixLayoutDestroy(p.a);
    if (p.b) cublasLtMatrixLayoutDestroy(p.b);
    if (p.c) cublasLtMatrixLayoutDestroy(p.c);
  }
  if (workspace_) cudaFree(workspace_);
  if (handle_) cublasLtDestroy(handle_);
}

Status GemmRunner::init(size_t workspace_bytes) {
  CUBLAS_CHECK(cublasLtCreate(&handle_));
  CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes));
  workspace_bytes_ = workspace_bytes;
  return Status::ok();
}

// Row-major Y[M,N] = X[M,K] W[N,K]^T is, in cuBLAS's column-major terms, Y^T (N x M) =
// op(W^T stored K x N) with transa = T, times X^T (K x M) with transb = N: a "TN" product.
Status GemmRunner::plan_for(int m, int n, int k, Plan** out) {
  auto key = std::make_tuple(m, n, k);
  auto it = plans_.find(key);
  if (it != plans_.end()) {
    *out = &it->second;
    return Status::ok();
  }
  Plan p;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, k, n, k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, k, m, k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_16BF, n, m, n));

  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  size_t ws = workspace_bytes_;
  Status st;
  if (cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                           sizeof(ws)) != CUBLAS_STATUS_SUCCESS)
    st = internal_error("cublasLtMatmulPreferenceSetAttribute failed");
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st.is_ok()) {
    cublasStatus_t hs =
        cublasLtMatmulAlgoGetHeuristic(handle_, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
    if (hs != CUBLAS_STATUS_SUCCESS || found == 0)
      st = internal_error("cuBLASLt has no bf16 algorithm for M=" + std::to_string(m) +
                          " N=" + std::to_string(n) + " K=" + std::to_string(k));
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (!st.is_ok()) {
    cublasLtMatmulDescDestroy(p.op);
    cublasLtMatrixLayoutDestroy(p.a);
    cublasLtMatrixLayoutDestroy(p.b);
    cublasLtMatrixLayoutDestroy(p.c);
    return st;
  }
  p.algo = result.algo;
  *out = &plans_.emplace(key, p).first->second;
  return Status::ok();
}

Status GemmRunner::gemm(const bf16* x, const bf16* w, bf16* y, int m, int n, int k,
                        cudaStream_t stream) {
  if (m == 0) return Status::ok();
  Plan* p = nullptr;
  QS_RETURN_IF_ERROR(plan_for(m, n, k, &p));
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(handle_, p->op, &alpha, w, p->a, x, p->b, &beta, y, p->c, y, p->c,
                              &p->algo, workspace_, workspace_bytes_, stream));
  return Status::ok();
}

}  // namespace qsearch
