// Row moves for compaction (see copy_rows.cuh): one CTA a pair, 16-byte copies.
#include "copy_rows.cuh"

namespace qsearch {
namespace {

__global__ void copy_rows_kernel(void* const* __restrict__ chunks, long long chunk_rows,
                                 long long row_bytes, const int64_t* __restrict__ src,
                                 const int64_t* __restrict__ dst, long long pairs) {
  for (long long p = blockIdx.x; p < pairs; p += gridDim.x) {
    const long long s = src[p];
    const long long d = dst[p];
    const uint4* from = reinterpret_cast<const uint4*>(
        static_cast<const char*>(chunks[s / chunk_rows]) + (s % chunk_rows) * row_bytes);
    uint4* to = reinterpret_cast<uint4*>(static_cast<char*>(chunks[d / chunk_rows]) +
                                         (d % chunk_rows) * row_bytes);
    for (long long i = threadIdx.x; i < row_bytes / 16; i += blockDim.x) to[i] = from[i];
  }
}

}  // namespace

cudaError_t launch_copy_rows(void* const* chunks, int64_t chunk_rows, int64_t row_bytes,
                             const int64_t* src, const int64_t* dst, int64_t pairs,
                             cudaStream_t stream) {
  if (pairs <= 0) return cudaSuccess;
  if (chunk_rows < 1 || row_bytes < 16 || row_bytes % 16 != 0) return cudaErrorInvalidValue;
  const long long blocks = pairs < 65535 ? pairs : 65535;
  copy_rows_kernel<<<static_cast<unsigned>(blocks), 128, 0, stream>>>(chunks, chunk_rows, row_bytes,
                                                                      src, dst, pairs);
  return cudaGetLastError();
}

}  // namespace qsearch
