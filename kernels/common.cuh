// Shared helpers of the CUDA kernels and the CUDA engine's host code.
//
// Error handling (llm.c's cudaCheck, but as values): every CUDA runtime / cuBLAS call is wrapped in
// CUDA_CHECK / CUBLAS_CHECK, which turn a failure into a qsearch::Status naming the call, the file
// and the line, and return it from the enclosing function (which must return Status or
// StatusOr<T>). Launchers check cudaGetLastError() after every launch (QS_CHECK_LAUNCH). Nothing
// here ever calls exit(): the server turns the Status into an HTTP error.
//
// Device helpers (warp reductions, bf16 packing) are only visible to nvcc (__CUDACC__), so this
// header is also safe to include from .cc host files compiled by g++.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

#include "common/status.h"

namespace qsearch {

using bf16 = __nv_bfloat16;

// A CUDA runtime failure as a Status. Out-of-memory becomes kResourceExhausted (so the caller can
// say "the model does not fit"); everything else kInternal.
inline Status cuda_status(cudaError_t err, const char* what, const char* file, int line) {
  std::string msg = std::string(what) + " failed: " + cudaGetErrorName(err) + " (" +
                    cudaGetErrorString(err) + ") at " + file + ":" + std::to_string(line);
  if (err == cudaErrorMemoryAllocation) return resource_exhausted(msg);
  return internal_error(msg);
}

// A cuBLAS status code (cublasStatus_t, passed as int to keep cublas headers out of here).
inline Status cublas_status(int code, const char* what, const char* file, int line) {
  std::string msg = std::string(what) + " failed: cuBLAS status " + std::to_string(code) + " at " +
                    file + ":" + std::to_string(line);
  if (code == 3 /* CUBLAS_STATUS_ALLOC_FAILED */) return resource_exhausted(msg);
  return internal_error(msg);
}

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
constexpr int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

}  // namespace qsearch

#define CUDA_CHECK(expr)                                                      \
  do {                                                                        \
    cudaError_t qs_cuda_err_ = (expr);                                        \
    if (qs_cuda_err_ != cudaSuccess)                                          \
      return ::qsearch::cuda_status(qs_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK(expr)                                                       \
  do {                                                                           \
    int qs_cublas_st_ = static_cast<int>(expr);                                  \
    if (qs_cublas_st_ != 0)                                                      \
      return ::qsearch::cublas_status(qs_cublas_st_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a <<<...>>> launch: reports a bad configuration (grid, shared memory) as a Status.
#define QS_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

#ifdef __CUDACC__
namespace qsearch {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a whole block (blockDim.x a multiple of 32, at most 1024). scratch: 32 floats of
// shared memory. Every thread gets the result. Contains __syncthreads().
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(t);
}

// 8 bf16 in one 16-byte vector, for 16-byte loads and stores.
struct alignas(16) Bf16x8 {
  __nv_bfloat162 h[4];
};

__device__ __forceinline__ void unpack8(const Bf16x8& v, float* f) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    float2 p = __bfloat1622float2(v.h[i]);
    f[2 * i] = p.x;
    f[2 * i + 1] = p.y;
  }
}

__device__ __forceinline__ Bf16x8 pack8(const float* f) {
  Bf16x8 v;
#pragma unroll
  for (int i = 0; i < 4; ++i) v.h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return v;
}

}  // namespace qsearch
#endif  // __CUDACC__
