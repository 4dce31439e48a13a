// int32 products -> scaled fp32 scores, in place (see scale_scores.cuh): one thread an element,
// a 2-D grid (rows x queries); memory bound, a few microseconds a million rows.
#include "scale_scores.cuh"

namespace qsearch {
namespace {

__global__ void scale_scores_kernel(void* __restrict__ buf, long long ld, long long n,
                                    long long row_base, const float* __restrict__ row_scales,
                                    const float* __restrict__ query_scales) {
  const long long r = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const int b = blockIdx.y;
  const long long at = b * ld + r;
  const int32_t v = static_cast<const int32_t*>(buf)[at];
  static_cast<float*>(buf)[at] = static_cast<float>(v) * query_scales[b] * row_scales[row_base + r];
}

}  // namespace

cudaError_t launch_scale_scores(void* buf, int64_t ld, int64_t n, int queries, int64_t row_base,
                                const float* row_scales, const float* query_scales,
                                cudaStream_t stream) {
  if (n <= 0 || queries <= 0) return cudaSuccess;
  if (queries > 65535 || ld < n) return cudaErrorInvalidValue;
  const int threads = 256;
  const dim3 grid(static_cast<unsigned>((n + threads - 1) / threads),
                  static_cast<unsigned>(queries));
  scale_scores_kernel<<<grid, threads, 0, stream>>>(buf, ld, n, row_base, row_scales, query_scales);
  return cudaGetLastError();
}

}  // namespace qsearch
