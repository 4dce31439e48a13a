// Block top-k selection (see topk.cuh for the contract).
//
// One CTA of 256 threads per (slice, query). Each iteration reads 1024 keys (4 a thread,
// coalesced), appends those above the threshold to a shared buffer of `cap` entries
// (cap = next power of two >= k + 1024, at least 2048) with a shared atomic, and when fewer than
// 1024 free slots remain sorts the buffer descending (bitonic, in shared memory), keeps the
// first k and takes the k-th key as the new threshold. Two barriers an iteration: one so every
// append has landed before the count is read, one so nobody appends before everybody read it.
#include <cuda_runtime.h>

#include <cmath>

#include "topk.cuh"

namespace qsearch {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 4;
constexpr int kStep = kThreads * kItems;

// Sorts keys/rows[0, cap) descending by key. cap is a power of two. Ends with a barrier.
__device__ void bitonic_desc(float* keys, int32_t* rows, int cap) {
  for (int size = 2; size <= cap; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < (cap >> 1); i += blockDim.x) {
        const int lo = 2 * i - (i & (stride - 1));
        const int hi = lo + stride;
        const bool desc = (lo & size) == 0;
        const float a = keys[lo];
        const float b = keys[hi];
        if (desc ? (a < b) : (a > b)) {
          keys[lo] = b;
          keys[hi] = a;
          const int32_t t = rows[lo];
          rows[lo] = rows[hi];
          rows[hi] = t;
        }
      }
      __syncthreads();
    }
  }
}

// Pads the buffer past `filled`, sorts it and keeps the best k (count and threshold updated).
__device__ void sort_and_trim(float* keys, int32_t* rows, int cap, int filled, int k, int* count,
                              float* threshold) {
  for (int i = filled + threadIdx.x; i < cap; i += blockDim.x) {
    keys[i] = -INFINITY;
    rows[i] = -1;
  }
  __syncthreads();
  bitonic_desc(keys, rows, cap);
  if (threadIdx.x == 0) {
    const int kept = filled < k ? filled : k;
    *count = kept;
    *threshold = kept == k ? keys[k - 1] : -INFINITY;
  }
  __syncthreads();
}

template <bool kMerge>
__global__ void __launch_bounds__(kThreads)
    topk_kernel(const float* __restrict__ in_keys, const int32_t* __restrict__ in_rows,
                long long ld, long long n, long long row_base, const uint32_t* __restrict__ live,
                const uint32_t* const* __restrict__ filters, const float* __restrict__ norms, int k,
                long long slice, int cap, float* __restrict__ out_keys,
                int32_t* __restrict__ out_rows, long long out_ld) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* keys = reinterpret_cast<float*>(smem_raw);
  int32_t* rows = reinterpret_cast<int32_t*>(keys + cap);
  __shared__ int count;
  __shared__ float threshold;

  const int b = blockIdx.y;
  const long long s = blockIdx.x;
  const long long begin = s * slice;
  const long long end = begin + slice < n ? begin + slice : n;
  const float* kin = in_keys + b * ld;
  const int32_t* rin = kMerge ? in_rows + b * ld : nullptr;
  const uint32_t* filter = (!kMerge && filters != nullptr) ? filters[b] : nullptr;
  if (threadIdx.x == 0) {
    count = 0;
    threshold = -INFINITY;
  }
  __syncthreads();

  for (long long base = begin; base < end; base += kStep) {
    const float thr = threshold;
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const long long r = base + j * kThreads + threadIdx.x;
      if (r >= end) continue;
      float key = kin[r];
      int32_t row;
      bool ok;
      if constexpr (kMerge) {
        row = rin[r];
        ok = row >= 0;
      } else {
        row = static_cast<int32_t>(row_base + r);
        ok = (live[row >> 5] >> (row & 31)) & 1u;
        if (ok && filter != nullptr) ok = (filter[row >> 5] >> (row & 31)) & 1u;
        if (norms != nullptr) key = 2.0f * key - norms[row];
      }
      if (ok && key > thr) {
        const int pos = atomicAdd(&count, 1);
        keys[pos] = key;
        rows[pos] = row;
      }
    }
    __syncthreads();  // every append of this iteration has landed
    const int filled = count;
    __syncthreads();  // everybody read count before anybody appends again
    if (filled > cap - kStep) sort_and_trim(keys, rows, cap, filled, k, &count, &threshold);
  }
  const int filled = count;
  __syncthreads();
  sort_and_trim(keys, rows, cap, filled, k, &count, &threshold);

  const long long out = static_cast<long long>(b) * out_ld + s * k;
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    out_keys[out + i] = keys[i];
    out_rows[out + i] = rows[i];
  }
}

int buffer_entries(int k) {
  int cap = 2048;
  while (cap < k + kStep) cap <<= 1;
  return cap;
}

template <bool kMerge>
cudaError_t launch(const float* keys, const int32_t* rows, int64_t ld, int64_t n, int queries,
                   int64_t row_base, const uint32_t* live, const uint32_t* const* filters,
                   const float* norms, int k, int64_t slice, float* out_keys, int32_t* out_rows,
                   int64_t out_ld, cudaStream_t stream) {
  if (n <= 0 || queries <= 0) return cudaSuccess;
  if (k < 1 || k > kTopkMaxK || slice < 1 || queries > 65535) return cudaErrorInvalidValue;
  const int64_t slices = topk_slices(n, slice);
  if (slices > 0x7fffffffLL || out_ld < slices * k) return cudaErrorInvalidValue;
  const int cap = buffer_entries(k);
  const size_t smem = static_cast<size_t>(cap) * (sizeof(float) + sizeof(int32_t));
  if (smem > 48 * 1024) {
    cudaError_t err = cudaFuncSetAttribute(
        topk_kernel<kMerge>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  dim3 grid(static_cast<unsigned>(slices), static_cast<unsigned>(queries));
  topk_kernel<kMerge><<<grid, kThreads, smem, stream>>>(
      keys, rows, ld, n, row_base, live, filters, norms, k, slice, cap, out_keys, out_rows, out_ld);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_topk_scores(const float* scores, int64_t ld, int64_t n, int queries,
                               int64_t row_base, const uint32_t* live,
                               const uint32_t* const* filters, const float* norms, int k,
                               int64_t slice, float* out_keys, int32_t* out_rows, int64_t out_ld,
                               cudaStream_t stream) {
  if (live == nullptr || row_base < 0 || row_base + n > 0x7fffffffLL) return cudaErrorInvalidValue;
  return launch<false>(scores, nullptr, ld, n, queries, row_base, live, filters, norms, k, slice,
                       out_keys, out_rows, out_ld, stream);
}

cudaError_t launch_topk_merge(const float* in_keys, const int32_t* in_rows, int64_t m, int queries,
                              int k, int64_t slice, float* out_keys, int32_t* out_rows,
                              int64_t out_ld, cudaStream_t stream) {
  return launch<true>(in_keys, in_rows, m, m, queries, 0, nullptr, nullptr, nullptr, k, slice,
                      out_keys, out_rows, out_ld, stream);
}

}  // namespace qsearch
