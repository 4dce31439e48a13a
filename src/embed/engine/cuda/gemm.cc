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
  if (dummy_scales_) cudaFree(dummy_scales_);
  if (handle_) cublasLtDestroy(handle_);
}

Status GemmRunner::init(size_t workspace_bytes) {
  CUBLAS_CHECK(cublasLtCreate(&handle_));
  CUDA_CHECK(cudaMalloc(&workspace_, workspace_bytes));
  workspace_bytes_ = workspace_bytes;
  CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&dummy_scales_), 256));
  return Status::ok();
}

// Row-major Y[M,N] = X[M,K] W[N,K]^T is, in cuBLAS's column-major terms, Y^T (N x M) =
// op(W^T stored K x N) with transa = T, times X^T (K x M) with transb = N: a "TN" product, the
// only layout cuBLASLt's FP8 kernels accept. cuBLAS's "A" is therefore W (its per-row scale
// vector has cuBLAS-M = our N entries) and "B" is X (cuBLAS-N = our M entries).
Status GemmRunner::make_plan(int m, int n, int k, bool fp8, bool outer, Plan* p) {
  const cudaDataType_t in_type = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  if (fp8) {
    const int8_t fast = fp8_fast_accum_ ? 1 : 0;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast,
                                                sizeof(fast)));
    if (outer) {
      const int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode,
                                                  sizeof(mode)));
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode,
                                                  sizeof(mode)));
      // the heuristic sees valid (aligned, device) scale pointers; each call sets the real ones
      const float* dummy = dummy_scales_;
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                  &dummy, sizeof(dummy)));
      CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                  &dummy, sizeof(dummy)));
    }
  }
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, in_type, k, n, k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, in_type, k, m, k));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, CUDA_R_16BF, n, m, n));

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
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(handle_, p->op, p->a, p->b, p->c, p->c, pref,
                                                       1, &result, &found);
    if (hs != CUBLAS_STATUS_SUCCESS || found == 0)
      st = internal_error(std::string("cuBLASLt has no ") +
                          (fp8 ? (outer ? "fp8 (outer-vector scaled)" : "fp8") : "bf16") +
                          " algorithm for M=" + std::to_string(m) + " N=" + std::to_string(n) +
                          " K=" + std::to_string(k));
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (!st.is_ok()) {
    cublasLtMatmulDescDestroy(p->op);
    cublasLtMatrixLayoutDestroy(p->a);
    cublasLtMatrixLayoutDestroy(p->b);
    cublasLtMatrixLayoutDestroy(p->c);
    *p = Plan{};
    return st;
  }
  p->algo = result.algo;
  return Status::ok();
}

Status GemmRunner::plan_for(int m, int n, int k, bool fp8, Plan** out) {
  auto key = std::make_tuple(m, n, k, fp8);
  auto it = plans_.find(key);
  if (it != plans_.end()) {
    *out = &it->second;
    return Status::ok();
  }
  if (fp8 && (m % 16 != 0 || n % 16 != 0 || k % 16 != 0))
    return invalid_argument("fp8 GEMM needs M, N and K multiples of 16 (M=" + std::to_string(m) +
                            " N=" + std::to_string(n) + " K=" + std::to_string(k) + ")");
  Plan p;
  Status st = make_plan(m, n, k, fp8, fp8 && fp8_outer_, &p);
  if (!st.is_ok() && fp8 && fp8_outer_) {
    // This cuBLASLt cannot scale per row/column here: scale in a separate pass from now on (one
    // mode for every shape, so plans and the forward pass agree).
    drop_fp8_plans();
    fp8_outer_ = false;
    st = make_plan(m, n, k, fp8, false, &p);
  }
  QS_RETURN_IF_ERROR(st);
  *out = &plans_.emplace(key, p).first->second;
  return Status::ok();
}

void GemmRunner::drop_fp8_plans() {
  for (auto it = plans_.begin(); it != plans_.end();) {
    if (std::get<3>(it->first)) {
      cublasLtMatmulDescDestroy(it->second.op);
      cublasLtMatrixLayoutDestroy(it->second.a);
      cublasLtMatrixLayoutDestroy(it->second.b);
      cublasLtMatrixLayoutDestroy(it->second.c);
      it = plans_.erase(it);
    } else {
      ++it;
    }
  }
}

Status GemmRunner::gemm(const bf16* x, const bf16* w, bf16* y, int m, int n, int k,
                        cudaStream_t stream) {
  if (m == 0) return Status::ok();
  Plan* p = nullptr;
  QS_RETURN_IF_ERROR(plan_for(m, n, k, false, &p));
  const float alpha = 1.0f, beta = 0.0f;
  CUBLAS_CHECK(cublasLtMatmul(handle_, p->op, &alpha, w, p->a, x, p->b, &beta, y, p->c, y, p->c,
                              &p->algo, workspace_, workspace_bytes_, stream));
  return Status::ok();
}

Status GemmRunner::gemm_fp8(const fp8e4* x, const float* sx, const fp8e4* w, const float* sw,
                            bf16* y, int m, int n, int k, cudaStream_t stream) {
  if (m == 0) return Status::ok();
  Plan* p = nullptr;
  QS_RETURN_IF_ERROR(plan_for(m, n, k, true, &p));
  const float alpha = 1.0f, beta = 0.0f;
  if (fp8_outer_) {
    // the scale pointers differ per call (per layer, per buffer): set on the shared descriptor
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sw,
                                                sizeof(sw)));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sx,
                                                sizeof(sx)));
    cublasStatus_t rs = cublasLtMatmul(handle_, p->op, &alpha, w, p->a, x, p->b, &beta, y, p->c, y,
                                       p->c, &p->algo, workspace_, workspace_bytes_, stream);
    if (rs == CUBLAS_STATUS_SUCCESS) return Status::ok();
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream, &cap));
    if (rs != CUBLAS_STATUS_NOT_SUPPORTED || cap != cudaStreamCaptureStatusNone) CUBLAS_CHECK(rs);
    // the heuristic offered an algorithm the library then refused: scale separately from now on
    drop_fp8_plans();
    fp8_outer_ = false;
    QS_RETURN_IF_ERROR(plan_for(m, n, k, true, &p));
  }
  CUBLAS_CHECK(cublasLtMatmul(handle_, p->op, &alpha, w, p->a, x, p->b, &beta, y, p->c, y, p->c,
                              &p->algo, workspace_, workspace_bytes_, stream));
  return launch_scale_outer(y, sx, sw, m, n, stream);
}

}  // namespace qsearch
